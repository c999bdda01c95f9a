//! Configuration: units, the resolved process spec, and the YAML file of `hydra up`.

pub mod app;
pub mod duration;
pub mod error;
mod fields;
pub mod load;
pub mod order;
mod processes;
pub mod spec;
pub mod units;
mod validate;
pub mod words;
mod yaml;

pub use app::{
    AppSpec, ChannelDef, ContainerDef, Encryption, HealthcheckDef, ImageSource, IpcDef,
    IsolationDef, NetworkDef, PortDef, ProcessDef, Protocol, ResourcesDef, RestartPolicy,
    SecurityDef, SharedMemoryDef, VolumeDef, VolumeMount,
};
pub use error::ConfigError;
pub use load::{load, parse};
pub use spec::{Limits, ProcessSpec, SpecError, UserSpec, Volume};

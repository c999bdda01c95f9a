//! Configuration: units, the resolved process spec (and, later, the YAML file).

pub mod spec;
pub mod units;

pub use spec::{Limits, ProcessSpec, SpecError, UserSpec, Volume};

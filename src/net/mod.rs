//! Network isolation of virtual processes.

pub mod loopback;
pub mod mode;

pub use mode::NetMode;

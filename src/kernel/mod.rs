//! HydraKernel: the supervisor side. So far: the state directory and crash clean-up that
//! `hydra run` relies on.

pub mod control;
pub mod gc;
pub mod health;
pub mod logs;
pub mod plan;
pub mod state;
pub mod supervisor;

//! HydraKernel: the supervisor side. So far: the state directory and crash clean-up that
//! `hydra run` relies on.

pub mod gc;
pub mod state;

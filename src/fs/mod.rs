//! Hydra VFS: a virtual process's filesystem view. The plan is built in the parent; the child
//! applies it (`apply::enter_root`) and pivots into it.

pub mod apply;
pub mod paths;
pub mod plan;
pub mod syscalls;

pub use plan::{MountPlan, PlanError, PlanOptions};

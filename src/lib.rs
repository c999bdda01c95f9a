//! hydra: a Linux-native mini-kernel for isolated virtual processes.
//!
//! The module map follows DESIGN.md: `config` (specs and units), `process` (clone3, the child's
//! set-up, init, supervision), `fs` (the VFS: overlay root, mounts, pivot_root), `security`
//! (capabilities, seccomp, Landlock, ids), `cgroups` (v1 and v2), `net` (isolation modes),
//! `kernel` (state and clean-up), `cli` (the command line).

pub mod cgroups;
pub mod cli;
pub mod config;
pub mod fs;
pub mod image;
pub mod ipc;
pub mod kernel;
pub mod net;
pub mod process;
pub mod security;

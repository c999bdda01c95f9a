//! Privilege reduction: capabilities, no_new_privs, seccomp, Landlock, security levels, user
//! namespace id maps and the process identity.

pub mod bpf;
pub mod capabilities;
pub mod idmap;
pub mod landlock;
pub mod level;
pub mod privileges;
pub mod seccomp;
pub mod user;

pub use level::SecurityLevel;

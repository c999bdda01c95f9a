//! A process's privileges as one prepared bundle — identity, capabilities, no_new_privs,
//! Landlock, seccomp — applied in the one order that works (bounding set while CAP_SETPCAP is
//! still held, then the user switch, then the sets, then no_new_privs, Landlock and the filter
//! last). The child of `hydra run`/`up` and `hydra exec` apply the same bundle. Applying it
//! allocates nothing.

use std::ffi::CString;

use nix::errno::Errno;

use super::capabilities::CapPlan;
use super::landlock::LandlockPlan;
use super::seccomp::{self, Program, SeccompError};
use super::user::Identity;
use super::SecurityLevel;
use crate::process::stage::{Stage, StepError};

#[derive(Debug)]
pub struct Privileges {
    pub identity: Identity,
    /// setgroups(2) is allowed (not in a rootless user namespace).
    pub set_groups: bool,
    pub caps: CapPlan,
    pub landlock: Option<LandlockPlan>,
    pub seccomp: Vec<Program>,
}

impl Privileges {
    /// Prepares the level's bundle for `identity`; `writable` are the paths Landlock leaves
    /// writable at `strict`. Returns warnings to show (no Landlock on this kernel).
    /// `set_groups`: setgroups(2) is allowed (not in a user namespace with a single-id map).
    pub fn new(
        level: SecurityLevel,
        identity: Identity,
        set_groups: bool,
        writable: Vec<CString>,
    ) -> Result<(Self, Vec<String>), SeccompError> {
        let mut warnings = Vec::new();
        let landlock = if level.landlock() {
            let plan = LandlockPlan::new(writable);
            if plan.is_none() {
                warnings.push(
                    "Landlock is not available: strict relies on its read-only root alone".into(),
                );
            }
            plan
        } else {
            None
        };
        let privileges = Privileges {
            identity,
            set_groups,
            caps: CapPlan::new(level),
            landlock,
            seccomp: seccomp::filters(level)?,
        };
        Ok((privileges, warnings))
    }

    /// Drops to the bundle. After this the process can only exec.
    pub fn apply(&self) -> Result<(), StepError> {
        let caps = |e| StepError::new(Stage::Capabilities, e);
        self.caps.drop_bounding().map_err(caps)?;
        self.identity
            .apply(self.set_groups)
            .map_err(|(stage, e)| StepError::new(stage, e))?;
        self.caps.set_sets(self.identity.uid).map_err(caps)?;
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(StepError::new(Stage::NoNewPrivs, Errno::last()));
        }
        if let Some(landlock) = &self.landlock {
            landlock
                .apply()
                .map_err(|e| StepError::new(Stage::Landlock, e))?;
        }
        for (i, filter) in self.seccomp.iter().enumerate() {
            seccomp::install(filter).map_err(|e| StepError::at(Stage::Seccomp, i, e))?;
        }
        Ok(())
    }
}

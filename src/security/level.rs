//! Security levels (DESIGN.md): what each one turns on.

/// How tightly a virtual process is confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SecurityLevel {
    /// Namespaces, cgroups, Docker's capability set, no seccomp (debugging only).
    Minimal,
    /// Docker's defaults: capability set, seccomp allow-list, no_new_privs, masked paths.
    #[default]
    Standard,
    /// No capabilities, a tight seccomp allow-list, read-only root, Landlock.
    Strict,
}

impl SecurityLevel {
    pub fn name(self) -> &'static str {
        match self {
            SecurityLevel::Minimal => "minimal",
            SecurityLevel::Standard => "standard",
            SecurityLevel::Strict => "strict",
        }
    }

    pub fn seccomp(self) -> bool {
        !matches!(self, SecurityLevel::Minimal)
    }

    pub fn read_only_root(self) -> bool {
        matches!(self, SecurityLevel::Strict)
    }

    pub fn landlock(self) -> bool {
        matches!(self, SecurityLevel::Strict)
    }
}

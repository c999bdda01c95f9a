//! The isolation modes of DESIGN.md.

/// How much of the network a virtual process sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NetMode {
    /// The host's network namespace.
    None,
    /// Own namespace reachable only through declared port mappings (not yet available).
    Partial,
    /// Own namespace with only `lo`.
    #[default]
    Complete,
}

impl NetMode {
    /// Whether the process gets its own network namespace.
    pub fn own_namespace(self) -> bool {
        !matches!(self, NetMode::None)
    }
}

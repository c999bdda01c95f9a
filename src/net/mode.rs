//! The isolation modes of DESIGN.md.

/// How much of the network a virtual process sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NetMode {
    /// The host's network namespace.
    None,
    /// Own namespace with one veth link, reachable only through declared port mappings.
    Partial,
    /// Own namespace with only `lo`.
    #[default]
    Complete,
}

impl NetMode {
    /// The mode's word in YAML and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NetMode::None => "none",
            NetMode::Partial => "partial",
            NetMode::Complete => "complete",
        }
    }

    /// Whether the process gets its own network namespace.
    pub fn own_namespace(self) -> bool {
        !matches!(self, NetMode::None)
    }
}

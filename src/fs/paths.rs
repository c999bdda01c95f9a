//! The fixed parts of every virtual process's filesystem view: Docker's masked and read-only
//! paths (users expect exactly these) and the device nodes of /dev.

/// Made unreadable: files get /dev/null bound over them, directories an empty read-only tmpfs.
pub const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Made read-only (bound over themselves, then remounted read-only).
pub const READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Character devices bound from the host into the process's /dev, as bubblewrap does. Binding
/// rather than mknod keeps /dev itself `nodev`: a node the process creates there (it holds
/// CAP_MKNOD at `standard`) cannot be opened, while each bound node is its own mount. The same
/// works inside a user namespace, where mknod is refused.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks every /dev has.
pub const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

//! `AppSpec`: one YAML file (DESIGN.md, "The YAML file"), validated, with units resolved and
//! relative paths resolved against the file's directory. `config::load` builds it; the kernel
//! plans virtual processes from it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Limits, UserSpec};
use crate::net::NetMode;
use crate::security::SecurityLevel;

/// A whole application: one container and its processes.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    /// The YAML file this spec was read from.
    pub file: PathBuf,
    /// `version:` as written (`1.0`, quoted or not).
    pub version: String,
    pub container: ContainerDef,
    pub security: SecurityDef,
    pub isolation: IsolationDef,
    pub resources: ResourcesDef,
    /// In file order.
    pub processes: Vec<ProcessDef>,
    /// Named tmpfs volumes, in file order.
    pub volumes: Vec<VolumeDef>,
    pub ipc: IpcDef,
    /// Named internal networks, in file order.
    pub networks: Vec<NetworkDef>,
}

/// `container:` — the name and the image.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerDef {
    /// Checked with `spec::check_name`.
    pub name: String,
    pub image: ImageSource,
}

/// Where the container's root filesystem comes from. Relative paths in the file are resolved
/// against the YAML file's directory; nothing here checks that they exist.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// `container.rootfs: DIR`.
    Rootfs(PathBuf),
    /// `container.path: FILE.hcon`.
    Image(PathBuf),
}

/// `security:`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityDef {
    pub encryption: Encryption,
    /// `security_level:`.
    pub level: SecurityLevel,
    /// `key:` — the private key of an encrypted image (resolved like the image path).
    pub key: Option<PathBuf>,
}

/// `security.encryption:` — how the image is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encryption {
    #[default]
    None,
    Aes,
    KyberAes,
}

/// `isolation:`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IsolationDef {
    pub mode: NetMode,
    pub ports: Vec<PortDef>,
}

/// One `isolation.ports` entry: host port `external` to port `internal` of `process`.
#[derive(Debug, Clone, PartialEq)]
pub struct PortDef {
    pub internal: u16,
    pub external: u16,
    pub protocol: Protocol,
    pub process: String,
    /// `host_ip:` — the host address to listen on; all addresses when `None`.
    pub host_ip: Option<IpAddr>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The IP protocol number (IPPROTO_TCP, IPPROTO_UDP).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
        }
    }
}

/// `resources:` — the container-wide limits (the container's parent cgroup; `max_files` and
/// `max_file_size` are rlimits of every process).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourcesDef {
    /// `max_memory:` in bytes.
    pub memory: Option<u64>,
    /// `max_cpu:` in thousandths of one CPU.
    pub cpu_millis: Option<u64>,
    /// `max_pids:`.
    pub pids: Option<u64>,
    /// `max_files:` (RLIMIT_NOFILE).
    pub max_files: Option<u64>,
    /// `max_file_size:` in bytes (RLIMIT_FSIZE).
    pub max_file_size: Option<u64>,
}

/// One `processes:` entry; `count: N` makes N virtual processes `name.0` … `name.N-1`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessDef {
    pub name: String,
    /// A string in the file is split into words as a shell would (quotes, backslashes; no
    /// expansion); a list is taken as it is.
    pub command: Vec<String>,
    /// At least 1.
    pub count: u32,
    /// In file order; numbers and booleans in the file become their text.
    pub env: Vec<(String, String)>,
    /// `limits:` (memory, cpu, pids) plus `max_files`/`max_file_size` from `resources`.
    pub limits: Limits,
    /// Nice value, -20..=19.
    pub priority: Option<i32>,
    pub restart: RestartPolicy,
    /// Names of processes in the same file.
    pub depends_on: Vec<String>,
    pub user: Option<UserSpec>,
    /// Absolute.
    pub workdir: Option<String>,
    pub read_only: bool,
    pub healthcheck: Option<HealthcheckDef>,
    pub volumes: Vec<VolumeMount>,
    /// `egress: allow` (`partial` mode): it may open connections to the host and beyond.
    pub egress: bool,
}

impl ProcessDef {
    /// The names of this process's virtual processes: `name` alone for `count: 1`,
    /// `name.0` … `name.N-1` otherwise.
    pub fn instance_names(&self) -> Vec<String> {
        if self.count == 1 {
            vec![self.name.clone()]
        } else {
            (0..self.count)
                .map(|i| format!("{}.{i}", self.name))
                .collect()
        }
    }
}

/// `restart:` — `no`, `on-failure`, `on-failure:N`, `always`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max` times when given.
    OnFailure {
        max: Option<u32>,
    },
    Always,
}

/// `healthcheck:` — a command run inside the process every `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthcheckDef {
    pub command: Vec<String>,
    /// Default 30 s.
    pub interval: Duration,
    /// Default 5 s.
    pub timeout: Duration,
    /// Failures in a row before the process is unhealthy; default 3.
    pub retries: u32,
}

/// One top-level `volumes:` entry: a named tmpfs.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeDef {
    pub name: String,
    /// Bytes.
    pub size: u64,
}

/// A process's `volumes:` entry `NAME:/target[:ro]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeMount {
    /// A volume declared at the top level.
    pub volume: String,
    /// Absolute.
    pub target: String,
    pub read_only: bool,
}

/// `ipc:`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpcDef {
    pub channels: Vec<ChannelDef>,
    pub shared_memory: Vec<SharedMemoryDef>,
}

/// One `ipc.channels` entry: a message queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelDef {
    pub name: String,
    /// Messages the queue holds; default 64.
    pub capacity: u32,
    /// Bytes per message at most; default 64 KiB.
    pub max_message: u64,
    /// Processes that may send.
    pub senders: Vec<String>,
    /// Processes that may receive.
    pub receivers: Vec<String>,
    /// `reply: true`: request/reply; hydra also creates one reply queue per sender instance
    /// (same capacity and max_message), which every receiver may answer on.
    pub reply: bool,
}

/// One `ipc.shared_memory` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedMemoryDef {
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Processes that may map it.
    pub processes: Vec<String>,
}

/// One `networks:` entry: an internal network joining the named processes.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkDef {
    pub name: String,
    pub processes: Vec<String>,
}

impl AppSpec {
    /// The processes in the order to start them: every process after the ones it
    /// `depends_on`, and file order wherever `depends_on` leaves a choice.
    pub fn start_order(&self) -> Vec<&ProcessDef> {
        let deps: Vec<Vec<usize>> = self
            .processes
            .iter()
            .map(|p| {
                p.depends_on
                    .iter()
                    .filter_map(|d| self.processes.iter().position(|q| &q.name == d))
                    .collect()
            })
            .collect();
        crate::config::order::start_order(&deps)
            .into_iter()
            .filter_map(|i| self.processes.get(i))
            .collect()
    }

    /// A process by name.
    pub fn process(&self, name: &str) -> Option<&ProcessDef> {
        self.processes.iter().find(|p| p.name == name)
    }
}

//! The parsed YAML file (`yaml::FileRaw`) → `AppSpec`: every section read and checked, then
//! the checks across sections — process names unique, every name that refers to a process
//! refers to one that exists, no two port mappings on one host port, no `depends_on` cycle, no
//! process limit above the container's. The first problem found is the error.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use serde_saphyr::{Location, Spanned};

use super::app::{
    AppSpec, ChannelDef, ContainerDef, Encryption, ImageSource, IpcDef, IsolationDef, NetworkDef,
    PortDef, ProcessDef, Protocol, ResourcesDef, SecurityDef, SharedMemoryDef, VolumeDef,
};
use super::error::ConfigError;
use super::fields::{place, Checker};
use super::order::find_cycle;
use super::processes::{process, ProcessSpans};
use super::yaml::{
    ContainerRaw, Entries, FileRaw, IpcRaw, IsolationRaw, PortRaw, ResourcesRaw, SecurityRaw, Text,
    TextList, VolumeRaw,
};
use crate::net::NetMode;
use crate::security::SecurityLevel;

/// Channel defaults when the file leaves them out.
const CHANNEL_CAPACITY: u32 = 64;
const CHANNEL_MAX_MESSAGE: u64 = 64 << 10;

/// Builds the spec of `raw`, read from `file`.
pub fn validate(raw: &Spanned<FileRaw>, file: &Path) -> Result<AppSpec, ConfigError> {
    let check = Checker::new(file);
    let dir = file.parent().unwrap_or(Path::new(""));
    let f = &raw.value;

    let version = match &f.version {
        Some(t) => version(&check, t)?,
        None => "1.0".to_string(),
    };
    let container = match &f.container {
        Some(c) => container(&check, c, dir)?,
        None => {
            return Err(check.missing(
                raw,
                "container",
                "the container's name and its path or rootfs",
            ))
        }
    };
    let security = match &f.security {
        Some(s) => security(&check, &s.value, dir)?,
        None => SecurityDef::default(),
    };
    let (resources, resource_spans) = match &f.resources {
        Some(r) => resources(&check, &r.value)?,
        None => (ResourcesDef::default(), ResourceSpans::default()),
    };
    let volumes = match &f.volumes {
        Some(v) => volumes(&check, &v.value)?,
        None => Vec::new(),
    };
    let volume_names: Vec<String> = volumes.iter().map(|v| v.name.clone()).collect();

    let list = match &f.processes {
        Some(list) if !list.value.is_empty() => list,
        Some(list) => {
            return Err(check.at(
                list,
                "processes: expected a list of at least one process, found an empty list",
            ))
        }
        None => {
            return Err(check.missing(raw, "processes", "a list of at least one process to run"))
        }
    };
    let mut processes: Vec<ProcessDef> = Vec::with_capacity(list.value.len());
    let mut spans: Vec<ProcessSpans> = Vec::with_capacity(list.value.len());
    for entry in &list.value {
        let (def, span) = process(&check, entry, &resources, &volume_names)?;
        processes.push(def);
        spans.push(span);
    }
    let known = Known::new(&check, &processes, &spans)?;
    limits_within(&check, &processes, &spans, &resources, &resource_spans)?;
    depends_on(&check, &processes, &spans, &known)?;

    let isolation = match &f.isolation {
        Some(i) => isolation(&check, i, &known)?,
        None => IsolationDef::default(),
    };
    egress_needs_partial(&check, &isolation, &processes, &spans)?;
    let ipc = match &f.ipc {
        Some(i) => ipc(&check, &i.value, &known)?,
        None => IpcDef::default(),
    };
    let networks = match &f.networks {
        Some(n) => networks(&check, &n.value, &known)?,
        None => Vec::new(),
    };

    Ok(AppSpec {
        file: file.to_path_buf(),
        version,
        container,
        security,
        isolation,
        resources,
        processes,
        volumes,
        ipc,
        networks,
    })
}

/// `egress: allow` only means something for a process with its own link.
fn egress_needs_partial(
    check: &Checker,
    isolation: &IsolationDef,
    processes: &[ProcessDef],
    spans: &[ProcessSpans],
) -> Result<(), ConfigError> {
    if isolation.mode == NetMode::Partial {
        return Ok(());
    }
    for (def, span) in processes.iter().zip(spans) {
        if let (true, Some(at)) = (def.egress, span.egress) {
            return Err(check.error(
                &at,
                format!("egress: allow needs `isolation: {{mode: partial}}` ({} has no link of its own to open connections from)", def.name),
            ));
        }
    }
    Ok(())
}

/// `version:` — `1.0` (quoted or not), `1` or `1.x`.
fn version(check: &Checker<'_>, t: &Text) -> Result<String, ConfigError> {
    let v = t.value.trim();
    let minor_ok = |m: &str| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit());
    let ok = v == "1" || v.strip_prefix("1.").is_some_and(minor_ok);
    if ok {
        Ok(v.to_string())
    } else {
        Err(check.expected("version", t, "'1.0'"))
    }
}

/// `container: {name, path | rootfs}`.
fn container(
    check: &Checker<'_>,
    raw: &Spanned<ContainerRaw>,
    dir: &Path,
) -> Result<ContainerDef, ConfigError> {
    let c = &raw.value;
    let name = match &c.name {
        Some(t) => check.name("container.name", t)?,
        None => return Err(check.missing(raw, "name", "the container's name")),
    };
    let image = match (&c.path, &c.rootfs) {
        (Some(path), None) => ImageSource::Image(check.host_path("container.path", path, dir)?),
        (None, Some(rootfs)) => {
            ImageSource::Rootfs(check.host_path("container.rootfs", rootfs, dir)?)
        }
        (Some(path), Some(rootfs)) => {
            let second = if (rootfs.referenced.line(), rootfs.referenced.column())
                > (path.referenced.line(), path.referenced.column())
            {
                rootfs
            } else {
                path
            };
            return Err(check.at(
                second,
                "container: expected either path (a .hcon image) or rootfs (a directory), found both",
            ));
        }
        (None, None) => {
            return Err(check.at(
                raw,
                "missing key `path` or `rootfs` (the container's .hcon image or root directory)",
            ))
        }
    };
    Ok(ContainerDef { name, image })
}

/// `security: {encryption, security_level, key}`.
fn security(check: &Checker<'_>, s: &SecurityRaw, dir: &Path) -> Result<SecurityDef, ConfigError> {
    let mut def = SecurityDef::default();
    if let Some(t) = &s.encryption {
        def.encryption = check.choice(
            "encryption",
            t,
            &[
                ("none", Encryption::None),
                ("aes", Encryption::Aes),
                ("kyber_aes", Encryption::KyberAes),
            ],
        )?;
    }
    if let Some(t) = &s.security_level {
        def.level = check.choice(
            "security_level",
            t,
            &[
                ("minimal", SecurityLevel::Minimal),
                ("standard", SecurityLevel::Standard),
                ("strict", SecurityLevel::Strict),
            ],
        )?;
    }
    if let Some(t) = &s.key {
        def.key = Some(check.host_path("security.key", t, dir)?);
    }
    Ok(def)
}

/// Where the container-wide limits were written.
#[derive(Default)]
struct ResourceSpans {
    memory: Option<Location>,
    cpu: Option<Location>,
    pids: Option<Location>,
}

/// `resources: {max_memory, max_cpu, max_pids, max_files, max_file_size}`.
fn resources(
    check: &Checker<'_>,
    r: &ResourcesRaw,
) -> Result<(ResourcesDef, ResourceSpans), ConfigError> {
    let mut def = ResourcesDef::default();
    let mut spans = ResourceSpans::default();
    if let Some(t) = &r.max_memory {
        def.memory = Some(check.size("max_memory", t)?);
        spans.memory = Some(t.referenced);
    }
    if let Some(t) = &r.max_cpu {
        def.cpu_millis = Some(check.cpus("max_cpu", t)?);
        spans.cpu = Some(t.referenced);
    }
    if let Some(t) = &r.max_pids {
        def.pids = Some(check.positive("max_pids", t)?);
        spans.pids = Some(t.referenced);
    }
    if let Some(t) = &r.max_files {
        def.max_files = Some(check.positive("max_files", t)?);
    }
    if let Some(t) = &r.max_file_size {
        def.max_file_size = Some(check.size("max_file_size", t)?);
    }
    Ok((def, spans))
}

/// Top-level `volumes: [{name, size}]`.
fn volumes(
    check: &Checker<'_>,
    list: &[Spanned<VolumeRaw>],
) -> Result<Vec<VolumeDef>, ConfigError> {
    let mut out: Vec<VolumeDef> = Vec::new();
    let mut seen = Seen::default();
    for entry in list {
        let v = &entry.value;
        let name_text = v
            .name
            .as_ref()
            .ok_or_else(|| check.missing(entry, "name", "the volume's name"))?;
        let name = check.name("volume name", name_text)?;
        seen.first(check, "volume", name_text)?;
        let size = match &v.size {
            Some(t) => check.size("size", t)?,
            None => {
                return Err(check.missing(
                    entry,
                    "size",
                    &format!("the size of volume '{name}', such as 64MB"),
                ))
            }
        };
        out.push(VolumeDef { name, size });
    }
    Ok(out)
}

/// Remembers where each name was first given, to report a second use.
#[derive(Default)]
struct Seen(HashMap<String, Location>);

impl Seen {
    fn first(&mut self, check: &Checker<'_>, what: &str, name: &Text) -> Result<(), ConfigError> {
        if let Some(first) = self.0.get(&name.value) {
            return Err(check.at(
                name,
                format!(
                    "duplicate {what} name '{}' (first defined at {})",
                    name.value,
                    place(first)
                ),
            ));
        }
        self.0.insert(name.value.clone(), name.referenced);
        Ok(())
    }
}

/// The process names of the file, to check names that refer to them.
struct Known {
    names: Vec<String>,
}

impl Known {
    /// Checks that process names, and the names of their virtual processes, are unique.
    fn new(
        check: &Checker<'_>,
        processes: &[ProcessDef],
        spans: &[ProcessSpans],
    ) -> Result<Self, ConfigError> {
        let mut names: HashMap<&str, Location> = HashMap::new();
        for (p, s) in processes.iter().zip(spans) {
            if let Some(first) = names.get(p.name.as_str()) {
                return Err(check.error(
                    &s.name,
                    format!(
                        "duplicate process name '{}' (first defined at {})",
                        p.name,
                        place(first)
                    ),
                ));
            }
            names.insert(&p.name, s.name);
        }
        // `worker` with `count: 2` is `worker.0` and `worker.1`: no process may be named so.
        let mut instances: HashMap<String, (Location, &str)> = HashMap::new();
        for (p, s) in processes.iter().zip(spans) {
            for instance in p.instance_names() {
                if let Some((first, owner)) = instances.get(&instance) {
                    return Err(check.error(
                        &s.name,
                        format!(
                            "duplicate process name '{instance}': processes '{owner}' (at {}) and '{}' both make a virtual process of that name",
                            place(first),
                            p.name
                        ),
                    ));
                }
                instances.insert(instance, (s.name, p.name.as_str()));
            }
        }
        Ok(Known {
            names: processes.iter().map(|p| p.name.clone()).collect(),
        })
    }

    /// Checks that `name` (given under `key`) is a process of the file.
    fn process(&self, check: &Checker<'_>, key: &str, name: &Text) -> Result<String, ConfigError> {
        self.process_at(check, key, &name.value, &name.referenced)
    }

    fn process_at(
        &self,
        check: &Checker<'_>,
        key: &str,
        name: &str,
        at: &Location,
    ) -> Result<String, ConfigError> {
        if self.names.iter().any(|n| n == name) {
            Ok(name.to_string())
        } else {
            Err(check.error(
                at,
                format!(
                    "{key}: unknown process '{name}' (the processes are: {})",
                    self.names.join(", ")
                ),
            ))
        }
    }

    /// A list of process names, each known; duplicates dropped.
    fn processes(
        &self,
        check: &Checker<'_>,
        key: &str,
        list: Option<&TextList>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut out: Vec<String> = Vec::new();
        for name in list.map(|l| l.value.as_slice()).unwrap_or_default() {
            let name = self.process(check, key, name)?;
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }
}

/// No process limit may be above the container's.
fn limits_within(
    check: &Checker<'_>,
    processes: &[ProcessDef],
    spans: &[ProcessSpans],
    container: &ResourcesDef,
    container_spans: &ResourceSpans,
) -> Result<(), ConfigError> {
    let cpus = |millis: u64| format!("{} CPU", millis as f64 / 1000.0);
    for (p, s) in processes.iter().zip(spans) {
        let rows = [
            (
                "memory",
                p.limits.memory,
                s.memory,
                container.memory,
                container_spans.memory,
                "max_memory",
                exact_size as fn(u64) -> String,
            ),
            (
                "cpu",
                p.limits.cpu_millis,
                s.cpu,
                container.cpu_millis,
                container_spans.cpu,
                "max_cpu",
                cpus,
            ),
            (
                "pids",
                p.limits.pids,
                s.pids,
                container.pids,
                container_spans.pids,
                "max_pids",
                |n: u64| n.to_string(),
            ),
        ];
        for (key, own, at, max, max_at, max_key, show) in rows {
            if let (Some(own), Some(at), Some(max), Some(max_at)) = (own, at, max, max_at) {
                if own > max {
                    return Err(check.error(
                        &at,
                        format!(
                            "limits.{key} of process '{}' ({}) is above the container's resources.{max_key} ({}, at {})",
                            p.name,
                            show(own),
                            show(max),
                            place(&max_at)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A size in the largest binary unit it is a whole number of: `1025 MiB`, `1 GiB`, `100 B`.
fn exact_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    UNITS
        .iter()
        .find(|(shift, _)| bytes >= 1 << shift && bytes.is_multiple_of(1 << shift))
        .map(|(shift, unit)| format!("{} {unit}", bytes >> shift))
        .unwrap_or_else(|| format!("{bytes} B"))
}

/// `depends_on` names processes of the file and makes no cycle.
fn depends_on(
    check: &Checker<'_>,
    processes: &[ProcessDef],
    spans: &[ProcessSpans],
    known: &Known,
) -> Result<(), ConfigError> {
    let mut graph: Vec<Vec<usize>> = Vec::with_capacity(processes.len());
    for (p, s) in processes.iter().zip(spans) {
        let mut edges = Vec::with_capacity(p.depends_on.len());
        for (dep, at) in p.depends_on.iter().zip(&s.depends_on) {
            known.process_at(check, "depends_on", dep, at)?;
            if let Some(i) = known.names.iter().position(|n| n == dep) {
                edges.push(i);
            }
        }
        graph.push(edges);
    }
    if let Some(cycle) = find_cycle(&graph) {
        let names: Vec<&str> = cycle
            .path
            .iter()
            .filter_map(|&i| processes.get(i).map(|p| p.name.as_str()))
            .collect();
        let (from, edge) = cycle.closing;
        let at = spans
            .get(from)
            .and_then(|s| s.depends_on.get(edge))
            .copied()
            .unwrap_or(Location::UNKNOWN);
        return Err(check.error(
            &at,
            format!(
                "depends_on: {} is a cycle (no process in it could start first)",
                names.join(" -> ")
            ),
        ));
    }
    Ok(())
}

/// `isolation: {mode, ports}`.
fn isolation(
    check: &Checker<'_>,
    raw: &Spanned<IsolationRaw>,
    known: &Known,
) -> Result<IsolationDef, ConfigError> {
    let i = &raw.value;
    let mode = match &i.mode {
        Some(t) => check.choice(
            "mode",
            t,
            &[
                ("none", NetMode::None),
                ("partial", NetMode::Partial),
                ("complete", NetMode::Complete),
            ],
        )?,
        None => NetMode::default(),
    };
    let mut ports: Vec<PortDef> = Vec::new();
    let Some(list) = &i.ports else {
        return Ok(IsolationDef { mode, ports });
    };
    if !list.value.is_empty() && mode != NetMode::Partial {
        let name = match mode {
            NetMode::None => "none",
            NetMode::Partial => "partial",
            NetMode::Complete => "complete",
        };
        return Err(check.at(
            list,
            format!("ports: publishing a port needs `mode: partial` (the mode is {name})"),
        ));
    }
    let mut taken: Vec<(Location, PortDef)> = Vec::new();
    for entry in &list.value {
        let (port, at) = port(check, entry, known)?;
        let clash = taken.iter().find(|(_, q)| {
            q.external == port.external
                && q.protocol == port.protocol
                && host_ips_overlap(q.host_ip, port.host_ip)
        });
        if let Some((first, q)) = clash {
            let host = match port.host_ip {
                Some(IpAddr::V6(ip)) => format!("[{ip}]:"),
                Some(ip) => format!("{ip}:"),
                None => String::new(),
            };
            return Err(check.error(
                &at,
                format!(
                    "ports: host port {host}{}/{} is already mapped (to {}:{}, at {})",
                    port.external,
                    port.protocol.name(),
                    q.process,
                    q.internal,
                    place(first)
                ),
            ));
        }
        taken.push((at, port.clone()));
        ports.push(port);
    }
    Ok(IsolationDef { mode, ports })
}

/// Two host addresses that a listener could both need: equal, or one of them all addresses
/// (of its family: `0.0.0.0` is every IPv4 address, `::` every IPv6 one).
fn host_ips_overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a == b || (a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
        }
        _ => true,
    }
}

/// One `ports` entry; the location returned is that of `external`, for clash reports.
fn port(
    check: &Checker<'_>,
    entry: &Spanned<PortRaw>,
    known: &Known,
) -> Result<(PortDef, Location), ConfigError> {
    let p = &entry.value;
    let number = |key: &str, t: &Option<Text>| -> Result<(u16, Location), ConfigError> {
        let t = t
            .as_ref()
            .ok_or_else(|| check.missing(entry, key, "a port number from 1 to 65535"))?;
        let n = check.int(key, t, 1..=65535, "a port number from 1 to 65535")?;
        Ok((n as u16, t.referenced))
    };
    let (internal, _) = number("internal", &p.internal)?;
    let (external, at) = number("external", &p.external)?;
    let protocol = match &p.protocol {
        Some(t) => check.choice(
            "protocol",
            t,
            &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)],
        )?,
        None => Protocol::Tcp,
    };
    let process = match &p.process {
        Some(t) => known.process(check, "ports", t)?,
        None => return Err(check.missing(entry, "process", "the process the port leads to")),
    };
    let host_ip = match &p.host_ip {
        Some(t) => Some(
            t.value
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| check.expected("host_ip", t, "an IP address such as 127.0.0.1"))?,
        ),
        None => None,
    };
    Ok((
        PortDef {
            internal,
            external,
            protocol,
            process,
            host_ip,
        },
        at,
    ))
}

/// `ipc: {channels, shared_memory}`.
fn ipc(check: &Checker<'_>, raw: &IpcRaw, known: &Known) -> Result<IpcDef, ConfigError> {
    let mut def = IpcDef::default();
    let mut seen = Seen::default();
    let mut announced = Announced::default();
    for entry in raw.channels.iter().flat_map(|l| l.value.iter()) {
        let c = &entry.value;
        let name_text = c
            .name
            .as_ref()
            .ok_or_else(|| check.missing(entry, "name", "the channel's name"))?;
        let name = check.name("channel name", name_text)?;
        seen.first(check, "channel", name_text)?;
        let capacity = match &c.capacity {
            Some(t) => check.int(
                "capacity",
                t,
                1..=i64::from(crate::ipc::queue::MAX_CAPACITY),
                &format!(
                    "a number of messages from 1 to {}",
                    crate::ipc::queue::MAX_CAPACITY
                ),
            )? as u32,
            None => CHANNEL_CAPACITY,
        };
        let max_message = match &c.max_message {
            Some(t) => {
                let size = check.size("max_message", t)?;
                if size == 0 || size > crate::ipc::queue::MAX_MESSAGE as u64 {
                    return Err(check.expected("max_message", t, "a size from 1B to 16MiB"));
                }
                size
            }
            None => CHANNEL_MAX_MESSAGE,
        };
        let reply = match &c.reply {
            Some(t) => check.boolean("reply", t)?,
            None => false,
        };
        announced.add(check, "channel", name_text, reply)?;
        def.channels.push(ChannelDef {
            name,
            capacity,
            max_message,
            senders: known.processes(check, "senders", c.senders.as_ref())?,
            receivers: known.processes(check, "receivers", c.receivers.as_ref())?,
            reply,
        });
    }
    let mut seen = Seen::default();
    for entry in raw.shared_memory.iter().flat_map(|l| l.value.iter()) {
        let m = &entry.value;
        let name_text = m
            .name
            .as_ref()
            .ok_or_else(|| check.missing(entry, "name", "the shared memory's name"))?;
        let name = check.name("shared memory name", name_text)?;
        seen.first(check, "shared memory", name_text)?;
        announced.add(check, "shared memory", name_text, false)?;
        let size = match &m.size {
            Some(t) => check.size("size", t)?,
            None => {
                return Err(check.missing(
                    entry,
                    "size",
                    &format!("the size of shared memory '{name}', such as 1MB"),
                ))
            }
        };
        def.shared_memory.push(SharedMemoryDef {
            name,
            size,
            processes: known.processes(check, "processes", m.processes.as_ref())?,
        });
    }
    Ok(def)
}

/// The environment variables the ipc objects are announced in (`HYDRA_IPC_<NAME>`), so that no
/// two objects share one: `a-b` and `a_b`, a channel and a shared memory of one name, or a
/// channel whose variable is one a `reply: true` channel derives from its own
/// (`<VAR>_REPLY`, `<VAR>_REPLY_<k>`, `<VAR>_CLIENT`, `<VAR>_CLIENTS`).
#[derive(Default)]
struct Announced {
    /// (variable, what, name, where, reply).
    objects: Vec<(String, &'static str, String, Location, bool)>,
}

/// Whether `var` is one of the variables a reply channel announced in `base` derives.
fn derived_from(base: &str, var: &str) -> bool {
    let Some(suffix) = var.strip_prefix(base) else {
        return false;
    };
    match suffix.strip_prefix("_REPLY_") {
        Some(k) => !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()),
        None => matches!(suffix, "_REPLY" | "_CLIENT" | "_CLIENTS"),
    }
}

impl Announced {
    fn add(
        &mut self,
        check: &Checker<'_>,
        what: &'static str,
        name: &Text,
        reply: bool,
    ) -> Result<(), ConfigError> {
        let var = crate::ipc::env_name(&name.value);
        for (other_var, other_what, other, at, other_reply) in &self.objects {
            let clash = if *other_var == var {
                format!("both would be announced in {var}")
            } else if *other_reply && derived_from(other_var, &var) {
                format!(
                    "{var} is one of the reply variables of {other_what} '{other}' (reply: true)"
                )
            } else if reply && derived_from(&var, other_var) {
                format!(
                    "{other_var} would be one of the reply variables of {what} '{}' (reply: true)",
                    name.value
                )
            } else {
                continue;
            };
            return Err(check.at(
                name,
                format!(
                    "{what} name '{}' clashes with {other_what} '{other}' (at {}): {clash}",
                    name.value,
                    place(at)
                ),
            ));
        }
        self.objects
            .push((var, what, name.value.clone(), name.referenced, reply));
        Ok(())
    }
}

/// `networks: {NAME: [process, ...]}`.
fn networks(
    check: &Checker<'_>,
    raw: &Entries<TextList>,
    known: &Known,
) -> Result<Vec<NetworkDef>, ConfigError> {
    let mut out = Vec::new();
    for (name_text, list) in &raw.0 {
        let name = check.name("network name", name_text)?;
        out.push(NetworkDef {
            name,
            processes: known.processes(check, "networks", Some(list))?,
        });
    }
    Ok(out)
}

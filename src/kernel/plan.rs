//! The Plan: an `AppSpec` (the YAML file) expanded into one `ProcessSpec` per virtual process
//! (`count: 4` → `worker.0` … `worker.3`), in start order, with the container-wide limits.

use std::path::PathBuf;

use thiserror::Error;

use crate::config::{AppSpec, HealthcheckDef, ImageSource, Limits, ProcessSpec, RestartPolicy};
use crate::net::firewall::Forward;
use crate::net::setup::Request;
use crate::net::NetMode;

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("{file}: container.path images (.hcon) are not supported yet; use container.rootfs")]
    Image { file: PathBuf },
    #[error("{file}: {process}: egress: allow needs root (rootless, a partial process has no link of its own, only its port mappings)")]
    EgressRootless { file: PathBuf, process: String },
    #[error("{file}: networks need isolation mode partial or complete (with none every process already shares the host's network)")]
    NetworksOnHost { file: PathBuf },
    #[error(
        "{file}: networks need root: hydra cannot create bridges without CAP_NET_ADMIN on the host"
    )]
    NetworksRootless { file: PathBuf },
    #[error("{file}: {what} are not supported yet")]
    Unsupported { file: PathBuf, what: &'static str },
}

/// One virtual process of the container.
#[derive(Debug, Clone)]
pub struct PlannedProcess {
    /// The YAML process it comes from (`worker` for `worker.2`).
    pub group: String,
    pub spec: ProcessSpec,
    pub restart: RestartPolicy,
    /// nice value (and cpu weight).
    pub priority: Option<i32>,
    pub healthcheck: Option<HealthcheckDef>,
    /// Named volumes: (volume, target, read_only).
    pub volumes: Vec<(String, String, bool)>,
}

/// Everything `up` starts.
#[derive(Debug, Clone)]
pub struct Plan {
    pub container: String,
    /// The YAML file, kept so `exec` and `ps` can name it.
    pub file: PathBuf,
    /// Container-wide cgroup limits (memory, cpu, pids) on `hydra/<container>`.
    pub limits: Limits,
    /// Named tmpfs volumes: (name, size).
    pub volumes: Vec<(String, u64)>,
    /// In start order (`depends_on` first).
    pub processes: Vec<PlannedProcess>,
    /// `partial` mode: one endpoint per process (same order) and the port mappings.
    pub network: Option<Request>,
}

/// The endpoints (one per virtual process, in plan order) and the port mappings, each aimed at
/// every instance of its process.
fn network(app: &AppSpec, processes: &[PlannedProcess]) -> Result<Request, PlanError> {
    let mut forwards = Vec::new();
    for port in &app.isolation.ports {
        forwards.push(Forward {
            protocol: port.protocol,
            host_ip: port.host_ip,
            host_port: port.external,
            port: port.internal,
            process: port.process.clone(),
            targets: processes
                .iter()
                .enumerate()
                .filter(|(_, p)| p.group == port.process)
                .map(|(i, _)| i)
                .collect(),
        });
    }
    let endpoints = match app.isolation.mode {
        NetMode::Partial => processes
            .iter()
            .map(|p| (p.spec.name.clone(), p.spec.egress))
            .collect(),
        _ => Vec::new(),
    };
    let networks = app
        .networks
        .iter()
        .map(|n| {
            let members = processes
                .iter()
                .filter(|p| n.processes.contains(&p.group))
                .map(|p| (p.spec.name.clone(), p.group.clone()))
                .collect();
            (n.name.clone(), members)
        })
        .collect();
    Ok(Request {
        endpoints,
        forwards,
        networks,
    })
}

/// Expands the spec. Features the YAML can name but hydra cannot run yet are refused here with
/// a clear line rather than ignored.
pub fn plan(app: &AppSpec) -> Result<Plan, PlanError> {
    let file = app.file.clone();
    let rootfs = match &app.container.image {
        ImageSource::Rootfs(dir) => dir.clone(),
        ImageSource::Image(_) => return Err(PlanError::Image { file }),
    };
    if crate::process::rootless() {
        if let Some(p) = app.processes.iter().find(|p| p.egress) {
            return Err(PlanError::EgressRootless {
                file,
                process: p.name.clone(),
            });
        }
    }
    if !app.ipc.channels.is_empty() || !app.ipc.shared_memory.is_empty() {
        return Err(PlanError::Unsupported {
            file,
            what: "ipc channels and shared memory",
        });
    }
    if !app.networks.is_empty() && app.isolation.mode == NetMode::None {
        return Err(PlanError::NetworksOnHost { file });
    }
    if !app.networks.is_empty() && crate::process::rootless() {
        return Err(PlanError::NetworksRootless { file });
    }
    let mut processes = Vec::new();
    for def in app.start_order() {
        for name in def.instance_names() {
            let mut limits = def.limits.clone();
            limits.max_files = app.resources.max_files;
            limits.max_file_size = app.resources.max_file_size;
            let spec = ProcessSpec {
                container: app.container.name.clone(),
                hostname: name.clone(),
                name,
                rootfs: rootfs.clone(),
                command: def.command.clone(),
                env: def.env.clone(),
                workdir: def.workdir.clone(),
                user: def.user.clone(),
                net: app.isolation.mode,
                egress: def.egress,
                ports: Vec::new(),
                security: app.security.level,
                read_only: def.read_only,
                init: true,
                volumes: Vec::new(),
                limits,
            };
            processes.push(PlannedProcess {
                group: def.name.clone(),
                spec,
                restart: def.restart.clone(),
                priority: def.priority,
                healthcheck: def.healthcheck.clone(),
                volumes: def
                    .volumes
                    .iter()
                    .map(|v| (v.volume.clone(), v.target.clone(), v.read_only))
                    .collect(),
            });
        }
    }
    let network = match (app.isolation.mode, app.networks.is_empty()) {
        (NetMode::Partial, _) | (_, false) => Some(network(app, &processes)?),
        _ => None,
    };
    Ok(Plan {
        network,
        container: app.container.name.clone(),
        file: app.file.clone(),
        limits: Limits {
            memory: app.resources.memory,
            cpu_millis: app.resources.cpu_millis,
            pids: app.resources.pids,
            max_files: None,
            max_file_size: None,
        },
        volumes: app
            .volumes
            .iter()
            .map(|v| (v.name.clone(), v.size))
            .collect(),
        processes,
    })
}

//! The Plan: an `AppSpec` (the YAML file) expanded into one `ProcessSpec` per virtual process
//! (`count: 4` → `worker.0` … `worker.3`), in start order, with the container-wide limits, and
//! the IPC objects with what each virtual process is given of them.

use std::path::PathBuf;

use thiserror::Error;

use crate::config::{AppSpec, HealthcheckDef, ImageSource, Limits, ProcessSpec, RestartPolicy};
use crate::ipc::manager::{IpcObject, IpcPlan, ObjectKind, ProcessIpc, Shape};
use crate::net::firewall::Forward;
use crate::net::setup::Request;
use crate::net::NetMode;

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("{file}: container.path {image}: {source}")]
    Image {
        file: PathBuf,
        image: PathBuf,
        source: crate::image::ImageError,
    },
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
    /// The IPC objects it is given (indices into `Plan::ipc`) and the variables naming them.
    pub ipc: ProcessIpc,
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
    /// The channels, reply queues and shared-memory regions the supervisor creates.
    pub ipc: IpcPlan,
}

/// The IPC objects of `app` and what each of `processes` (plan order) gets of them. The
/// environment contract (`ipc::rpc` and the processes rely on it):
/// - a sender or receiver of channel NAME, or a process of shared memory NAME:
///   `HYDRA_IPC_<NAME>=<fd>`;
/// - `reply: true`: the k-th sender instance (0-based, plan order) also gets its own reply
///   queue as `HYDRA_IPC_<NAME>_REPLY=<fd>` and `HYDRA_IPC_<NAME>_CLIENT=<k>`; every receiver
///   gets `HYDRA_IPC_<NAME>_REPLY_<k>=<fd>` for every k and `HYDRA_IPC_<NAME>_CLIENTS=<n>`;
/// - a process listed nowhere gets nothing.
///
/// A process's objects take fds 3, 4, … in the order first given; one listed twice for an
/// object (a sender that also receives) gets it once.
fn ipc(app: &AppSpec, processes: &mut [PlannedProcess]) -> IpcPlan {
    let mut plan = IpcPlan::default();
    for c in &app.ipc.channels {
        let shape = Shape::Queue {
            capacity: c.capacity,
            max_message: c.max_message,
        };
        let var = crate::ipc::env_name(&c.name);
        let channel = plan.push(IpcObject::new(c.name.clone(), ObjectKind::Channel, shape));
        let sends = |p: &PlannedProcess| c.senders.contains(&p.group);
        let receives = |p: &PlannedProcess| c.receivers.contains(&p.group);
        let replies: Vec<usize> = if c.reply {
            let senders = processes.iter().filter(|p| sends(p)).count();
            (0..senders)
                .map(|k| {
                    let name = format!("{}.reply.{k}", c.name);
                    plan.push(IpcObject::new(name, ObjectKind::Reply, shape))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut client = 0;
        for p in processes.iter_mut() {
            let (sender, receiver) = (sends(p), receives(p));
            if !sender && !receiver {
                continue;
            }
            p.ipc.pass(channel, var.clone());
            if !c.reply {
                continue;
            }
            if let (true, Some(&own)) = (sender, replies.get(client)) {
                p.ipc.pass(own, format!("{var}_REPLY"));
                p.ipc.set(format!("{var}_CLIENT"), client.to_string());
                client += 1;
            }
            if receiver {
                for (k, &reply) in replies.iter().enumerate() {
                    p.ipc.pass(reply, format!("{var}_REPLY_{k}"));
                }
                p.ipc
                    .set(format!("{var}_CLIENTS"), replies.len().to_string());
            }
        }
    }
    for m in &app.ipc.shared_memory {
        let region = plan.push(IpcObject::new(
            m.name.clone(),
            ObjectKind::SharedMemory,
            Shape::Memory { size: m.size },
        ));
        let var = crate::ipc::env_name(&m.name);
        for p in processes
            .iter_mut()
            .filter(|p| m.processes.contains(&p.group))
        {
            p.ipc.pass(region, var.clone());
        }
    }
    plan
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

/// The verified root of `container.path` (from the image cache); an image not encrypted as
/// `security.encryption` declares (when not `none`) is refused.
fn image_root(app: &AppSpec, image: &std::path::Path) -> Result<PathBuf, PlanError> {
    use crate::image::Encryption;
    let required = match app.security.encryption {
        crate::config::Encryption::None => None,
        crate::config::Encryption::Aes => Some(Encryption::Aes),
        crate::config::Encryption::KyberAes => Some(Encryption::KyberAes),
    };
    crate::image::cache::prepare(image, app.security.key.as_deref(), required).map_err(|source| {
        PlanError::Image {
            file: app.file.clone(),
            image: image.to_path_buf(),
            source,
        }
    })
}

/// Expands the spec. Features the YAML can name but hydra cannot run yet are refused here with
/// a clear line rather than ignored.
pub fn plan(app: &AppSpec) -> Result<Plan, PlanError> {
    let file = app.file.clone();
    let rootfs = match &app.container.image {
        ImageSource::Rootfs(dir) => dir.clone(),
        ImageSource::Image(image) => image_root(app, image)?,
    };
    if crate::process::rootless() {
        if let Some(p) = app.processes.iter().find(|p| p.egress) {
            return Err(PlanError::EgressRootless {
                file,
                process: p.name.clone(),
            });
        }
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
                ipc: ProcessIpc::default(),
            });
        }
    }
    let ipc = ipc(app, &mut processes);
    let network = match (app.isolation.mode, app.networks.is_empty()) {
        (NetMode::Partial, _) | (_, false) => Some(network(app, &processes)?),
        _ => None,
    };
    Ok(Plan {
        network,
        ipc,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(body: &str) -> Plan {
        let yaml = format!("container: {{name: app, rootfs: /r}}\n{body}");
        let app = crate::config::parse(&yaml, std::path::Path::new("/srv/hydra.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        plan(&app).unwrap_or_else(|e| panic!("{e}"))
    }

    /// (process, its variables as `K=V`, the names of the objects at fds 3, 4, …).
    fn given(plan: &Plan) -> Vec<(String, Vec<String>, Vec<String>)> {
        plan.processes
            .iter()
            .map(|p| {
                (
                    p.spec.name.clone(),
                    p.ipc.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    p.ipc
                        .objects
                        .iter()
                        .map(|&i| plan.ipc.objects[i].name.clone())
                        .collect(),
                )
            })
            .collect()
    }

    fn row(name: &str, env: &[&str], objects: &[&str]) -> (String, Vec<String>, Vec<String>) {
        (
            name.to_string(),
            env.iter().map(|s| s.to_string()).collect(),
            objects.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn the_ipc_env_contract() {
        let plan = planned(
            "processes:
  - {name: server, command: s}
  - {name: client, command: c, count: 2}
  - {name: other, command: o}
  - {name: both, command: b}
ipc:
  channels:
    - {name: rpc-in, capacity: 8, max_message: 1KB, reply: true, senders: [client, both], receivers: [server, both]}
    - {name: log, senders: [server]}
  shared_memory:
    - {name: frames, size: 1MB, processes: [server, client]}
",
        );
        let objects: Vec<(&str, ObjectKind, &str, Shape)> = plan
            .ipc
            .objects
            .iter()
            .map(|o| (&*o.name, o.kind, &*o.env, o.shape))
            .collect();
        let queue = Shape::Queue {
            capacity: 8,
            max_message: 1024,
        };
        assert_eq!(
            objects,
            [
                ("rpc-in", ObjectKind::Channel, "HYDRA_IPC_RPC_IN", queue),
                (
                    "rpc-in.reply.0",
                    ObjectKind::Reply,
                    "HYDRA_IPC_RPC_IN_REPLY_0",
                    queue
                ),
                (
                    "rpc-in.reply.1",
                    ObjectKind::Reply,
                    "HYDRA_IPC_RPC_IN_REPLY_1",
                    queue
                ),
                (
                    "rpc-in.reply.2",
                    ObjectKind::Reply,
                    "HYDRA_IPC_RPC_IN_REPLY_2",
                    queue
                ),
                (
                    "log",
                    ObjectKind::Channel,
                    "HYDRA_IPC_LOG",
                    Shape::Queue {
                        capacity: 64,
                        max_message: 64 << 10
                    }
                ),
                (
                    "frames",
                    ObjectKind::SharedMemory,
                    "HYDRA_IPC_FRAMES",
                    Shape::Memory { size: 1 << 20 }
                ),
            ]
        );
        assert_eq!(
            given(&plan),
            [
                row(
                    "server",
                    &[
                        "HYDRA_IPC_RPC_IN=3",
                        "HYDRA_IPC_RPC_IN_REPLY_0=4",
                        "HYDRA_IPC_RPC_IN_REPLY_1=5",
                        "HYDRA_IPC_RPC_IN_REPLY_2=6",
                        "HYDRA_IPC_RPC_IN_CLIENTS=3",
                        "HYDRA_IPC_LOG=7",
                        "HYDRA_IPC_FRAMES=8",
                    ],
                    &[
                        "rpc-in",
                        "rpc-in.reply.0",
                        "rpc-in.reply.1",
                        "rpc-in.reply.2",
                        "log",
                        "frames"
                    ],
                ),
                row(
                    "client.0",
                    &[
                        "HYDRA_IPC_RPC_IN=3",
                        "HYDRA_IPC_RPC_IN_REPLY=4",
                        "HYDRA_IPC_RPC_IN_CLIENT=0",
                        "HYDRA_IPC_FRAMES=5",
                    ],
                    &["rpc-in", "rpc-in.reply.0", "frames"],
                ),
                row(
                    "client.1",
                    &[
                        "HYDRA_IPC_RPC_IN=3",
                        "HYDRA_IPC_RPC_IN_REPLY=4",
                        "HYDRA_IPC_RPC_IN_CLIENT=1",
                        "HYDRA_IPC_FRAMES=5",
                    ],
                    &["rpc-in", "rpc-in.reply.1", "frames"],
                ),
                row("other", &[], &[]),
                // Sender and receiver: its own reply queue is one fd under two names.
                row(
                    "both",
                    &[
                        "HYDRA_IPC_RPC_IN=3",
                        "HYDRA_IPC_RPC_IN_REPLY=4",
                        "HYDRA_IPC_RPC_IN_CLIENT=2",
                        "HYDRA_IPC_RPC_IN_REPLY_0=5",
                        "HYDRA_IPC_RPC_IN_REPLY_1=6",
                        "HYDRA_IPC_RPC_IN_REPLY_2=4",
                        "HYDRA_IPC_RPC_IN_CLIENTS=3",
                    ],
                    &[
                        "rpc-in",
                        "rpc-in.reply.2",
                        "rpc-in.reply.0",
                        "rpc-in.reply.1"
                    ],
                ),
            ]
        );
    }

    #[test]
    fn client_indices_follow_plan_order_not_file_order() {
        let plan = planned(
            "processes:
  - {name: a, command: x, depends_on: [b]}
  - {name: b, command: cb}
  - {name: s, command: cs}
ipc:
  channels:
    - {name: q, reply: true, senders: [a, b], receivers: [s]}
",
        );
        let names: Vec<&str> = plan.processes.iter().map(|p| &*p.spec.name).collect();
        assert_eq!(names, ["b", "a", "s"]);
        let env = |i: usize| plan.processes[i].ipc.env.clone();
        assert!(env(0).contains(&("HYDRA_IPC_Q_CLIENT".into(), "0".into())));
        assert!(env(1).contains(&("HYDRA_IPC_Q_CLIENT".into(), "1".into())));
        // b (client 0) owns q.reply.0, the one the server knows as REPLY_0.
        let own = |i: usize| {
            plan.ipc.objects[plan.processes[i].ipc.objects[1]]
                .name
                .clone()
        };
        assert_eq!(own(0), "q.reply.0");
        assert_eq!(own(1), "q.reply.1");
        assert!(env(2).contains(&("HYDRA_IPC_Q_CLIENTS".into(), "2".into())));
    }

    #[test]
    fn no_ipc_no_objects() {
        let plan = planned("processes:\n  - {name: a, command: x}\n");
        assert!(plan.ipc.objects.is_empty());
        assert!(plan.processes[0].ipc.is_empty());
    }

    #[test]
    fn a_reply_channel_without_senders_tells_receivers_there_are_none() {
        let plan = planned(
            "processes:\n  - {name: s, command: z}\nipc:\n  channels:\n    - {name: q, reply: true, receivers: [s]}\n",
        );
        assert_eq!(plan.ipc.objects.len(), 1);
        assert_eq!(
            plan.processes[0].ipc.env,
            [
                ("HYDRA_IPC_Q".to_string(), "3".to_string()),
                ("HYDRA_IPC_Q_CLIENTS".to_string(), "0".to_string())
            ]
        );
    }
}

//! IpcManager: creates a container's channels, reply queues and shared-memory regions (sealed
//! memfds) when its supervisor starts, before any process, and keeps them for the container's
//! life, so a restarted process gets the very same objects. Each process is handed only the
//! objects the YAML lists it for (`kernel::plan` decides which, and at which fd numbers).
//!
//! The supervisor records its objects in `<state dir>/ipc.json` (its pid and, per object, the
//! supervisor's own fd number), so that a host-side command can open `/proc/<pid>/fd/<fd>`
//! read-only and read a queue's statistics without joining the container.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::memfd::{self, MemfdError};
use super::queue::{self, Queue, QueueError, Stats};

/// The record's file name in the container's state directory.
pub const RECORD: &str = "ipc.json";

#[derive(Debug, Error)]
pub enum ManagerError {
    #[error("creating {kind} {name}: {source}")]
    Queue {
        kind: &'static str,
        name: String,
        source: QueueError,
    },
    #[error("creating shared memory {name}: {source}")]
    Memory { name: String, source: MemfdError },
    #[error("{name}: max_message of {max_message} bytes is too large for this machine")]
    MessageSize { name: String, max_message: u64 },
    #[error("writing {path}: {source}")]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no IPC record (the container is not running or declares no channels)")]
    NoRecord(PathBuf),
    #[error("opening {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is no longer {name}'s memfd (its supervisor is gone)")]
    Stale { path: String, name: String },
    #[error("reading the statistics of {name}: {source}")]
    Stats { name: String, source: QueueError },
}

/// What an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A channel's message queue (`ipc.channels`).
    Channel,
    /// The reply queue of one sender instance of a `reply: true` channel.
    Reply,
    /// A shared-memory region (`ipc.shared_memory`).
    SharedMemory,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Channel => "channel",
            ObjectKind::Reply => "reply queue",
            ObjectKind::SharedMemory => "shared memory",
        }
    }
}

/// How large an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Queue { capacity: u32, max_message: u64 },
    Memory { size: u64 },
}

/// One kernel object to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcObject {
    /// `jobs`; `jobs.reply.0` for the reply queue of the channel's sender 0; the memfd is
    /// named `hydra:<name>` (`memfd:hydra:jobs` in /proc/PID/fd).
    pub name: String,
    pub kind: ObjectKind,
    /// `env_name(name)`: the variable the object is announced in (to a reply queue's
    /// receivers; its sender sees it as `HYDRA_IPC_<CHANNEL>_REPLY`).
    pub env: String,
    pub shape: Shape,
}

impl IpcObject {
    pub fn new(name: String, kind: ObjectKind, shape: Shape) -> IpcObject {
        IpcObject {
            env: super::env_name(&name),
            name,
            kind,
            shape,
        }
    }
}

/// Every object of a container, in creation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpcPlan {
    pub objects: Vec<IpcObject>,
}

impl IpcPlan {
    /// Adds an object; returns its index.
    pub fn push(&mut self, object: IpcObject) -> usize {
        self.objects.push(object);
        self.objects.len() - 1
    }
}

/// What one virtual process is given: fds and the variables that announce them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessIpc {
    /// Indices into `IpcPlan::objects`, in fd order: the first is the process's fd
    /// `FIRST_PASSED_FD`, the next one above it, and so on (the child places them so).
    pub objects: Vec<usize>,
    /// In the order given: `HYDRA_IPC_JOBS=3`, `HYDRA_IPC_JOBS_CLIENT=0`, ...
    pub env: Vec<(String, String)>,
}

impl ProcessIpc {
    /// Passes `object` (once, however many variables name it) and announces its fd in `var`.
    pub fn pass(&mut self, object: usize, var: String) {
        let index = match self.objects.iter().position(|&o| o == object) {
            Some(i) => i,
            None => {
                self.objects.push(object);
                self.objects.len() - 1
            }
        };
        let fd = crate::process::launch::passed_fd(index);
        self.set(var, fd.to_string());
    }

    /// Sets a plain variable (`HYDRA_IPC_JOBS_CLIENTS=2`).
    pub fn set(&mut self, var: String, value: String) {
        self.env.retain(|(k, _)| *k != var);
        self.env.push((var, value));
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.env.is_empty()
    }
}

/// `ipc.json`: where a host-side reader finds the objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The supervisor's pid.
    pub pid: i32,
    pub objects: Vec<RecordedObject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedObject {
    pub name: String,
    pub kind: ObjectKind,
    /// The supervisor's fd number.
    pub fd: RawFd,
    pub env: String,
}

/// The objects of one running container, held by its supervisor.
#[derive(Debug)]
pub struct IpcManager {
    /// One per `IpcPlan::objects`, same order.
    fds: Vec<OwnedFd>,
}

impl IpcManager {
    /// Creates every object of `plan` and, when there is any, records them in `state_dir`.
    pub fn create(plan: &IpcPlan, state_dir: &Path) -> Result<IpcManager, ManagerError> {
        let mut fds = Vec::with_capacity(plan.objects.len());
        for object in &plan.objects {
            fds.push(create_object(object)?);
        }
        let manager = IpcManager { fds };
        if !plan.objects.is_empty() {
            manager.write_record(plan, state_dir)?;
        }
        Ok(manager)
    }

    /// The supervisor's fds of `objects` (indices into the plan), in order: what the launch
    /// plan places at the process's fds `FIRST_PASSED_FD`, ….
    pub fn sources(&self, process: &ProcessIpc) -> Vec<RawFd> {
        process
            .objects
            .iter()
            .filter_map(|&i| self.fds.get(i).map(AsRawFd::as_raw_fd))
            .collect()
    }

    fn write_record(&self, plan: &IpcPlan, state_dir: &Path) -> Result<(), ManagerError> {
        let record = Record {
            pid: std::process::id() as i32,
            objects: plan
                .objects
                .iter()
                .zip(&self.fds)
                .map(|(o, fd)| RecordedObject {
                    name: o.name.clone(),
                    kind: o.kind,
                    fd: fd.as_raw_fd(),
                    env: o.env.clone(),
                })
                .collect(),
        };
        let path = state_dir.join(RECORD);
        let error = |source| ManagerError::Record {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(&record).map_err(|e| error(e.into()))?;
        // Written aside and renamed: a reader never sees half a file.
        let partial = state_dir.join(format!("{RECORD}.new"));
        std::fs::write(&partial, text).map_err(error)?;
        std::fs::rename(&partial, &path).map_err(error)
    }
}

fn create_object(object: &IpcObject) -> Result<OwnedFd, ManagerError> {
    match object.shape {
        Shape::Queue {
            capacity,
            max_message,
        } => {
            let max = usize::try_from(max_message).map_err(|_| ManagerError::MessageSize {
                name: object.name.clone(),
                max_message,
            })?;
            Queue::create(&object.name, capacity, max).map_err(|source| ManagerError::Queue {
                kind: object.kind.name(),
                name: object.name.clone(),
                source,
            })
        }
        Shape::Memory { size } => {
            memfd::create(&object.name, size).map_err(|source| ManagerError::Memory {
                name: object.name.clone(),
                source,
            })
        }
    }
}

/// The record of the container whose state directory is `dir`, if it has one.
pub fn load(dir: &Path) -> Option<Record> {
    let text = std::fs::read_to_string(dir.join(RECORD)).ok()?;
    serde_json::from_str(&text).ok()
}

/// One queue's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub name: String,
    pub kind: ObjectKind,
    pub env: String,
    pub stats: Stats,
}

/// The statistics of every queue (channels and reply queues) of the container whose state
/// directory is `dir`, read through read-only opens of the supervisor's fds.
pub fn channel_stats(dir: &Path) -> Result<Vec<QueueStats>, ManagerError> {
    let record = load(dir).ok_or_else(|| ManagerError::NoRecord(dir.to_path_buf()))?;
    record
        .objects
        .iter()
        .filter(|o| o.kind != ObjectKind::SharedMemory)
        .map(|o| {
            Ok(QueueStats {
                name: o.name.clone(),
                kind: o.kind,
                env: o.env.clone(),
                stats: queue_stats(record.pid, o)?,
            })
        })
        .collect()
}

fn queue_stats(pid: i32, object: &RecordedObject) -> Result<Stats, ManagerError> {
    let path = format!("/proc/{pid}/fd/{}", object.fd);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .open(&path)
        .map_err(|source| ManagerError::Open {
            path: path.clone(),
            source,
        })?;
    // The pid may have been reused since the record was written: what was opened must be
    // the object's own memfd.
    let opened = format!("/proc/self/fd/{}", file.as_raw_fd());
    let expected = format!("/memfd:hydra:{} (deleted)", object.name);
    let link = std::fs::read_link(&opened).unwrap_or_default();
    if link.as_os_str() != expected.as_str() {
        return Err(ManagerError::Stale {
            path,
            name: object.name.clone(),
        });
    }
    queue::read_stats(file.as_fd()).map_err(|source| ManagerError::Stats {
        name: object.name.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hydra-ipc-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn plan() -> IpcPlan {
        let queue = Shape::Queue {
            capacity: 4,
            max_message: 64,
        };
        let mut plan = IpcPlan::default();
        plan.push(IpcObject::new("jobs".into(), ObjectKind::Channel, queue));
        plan.push(IpcObject::new(
            "jobs.reply.0".into(),
            ObjectKind::Reply,
            queue,
        ));
        plan.push(IpcObject::new(
            "frames".into(),
            ObjectKind::SharedMemory,
            Shape::Memory { size: 4096 },
        ));
        plan
    }

    #[test]
    fn a_process_gets_each_object_once_at_consecutive_fds() {
        let mut p = ProcessIpc::default();
        p.pass(2, "HYDRA_IPC_A".into());
        p.pass(0, "HYDRA_IPC_B".into());
        p.pass(2, "HYDRA_IPC_C".into());
        p.set("HYDRA_IPC_B_CLIENTS".into(), "1".into());
        assert_eq!(p.objects, [2, 0]);
        let env: Vec<(&str, &str)> = p.env.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(
            env,
            [
                ("HYDRA_IPC_A", "3"),
                ("HYDRA_IPC_B", "4"),
                ("HYDRA_IPC_C", "3"),
                ("HYDRA_IPC_B_CLIENTS", "1")
            ]
        );
    }

    #[test]
    fn objects_are_created_recorded_and_their_stats_read_back() {
        let dir = temp_dir("record");
        let plan = plan();
        let manager = IpcManager::create(&plan, &dir).expect("create");
        let record = load(&dir).expect("record");
        assert_eq!(record.pid, std::process::id() as i32);
        let kinds: Vec<(&str, ObjectKind, &str)> = record
            .objects
            .iter()
            .map(|o| (&*o.name, o.kind, &*o.env))
            .collect();
        assert_eq!(
            kinds,
            [
                ("jobs", ObjectKind::Channel, "HYDRA_IPC_JOBS"),
                ("jobs.reply.0", ObjectKind::Reply, "HYDRA_IPC_JOBS_REPLY_0"),
                ("frames", ObjectKind::SharedMemory, "HYDRA_IPC_FRAMES"),
            ]
        );
        let json = std::fs::read_to_string(dir.join(RECORD)).expect("json");
        assert!(json.contains("\"kind\": \"shared_memory\""), "{json}");
        let process = ProcessIpc {
            objects: vec![2, 0],
            env: Vec::new(),
        };
        assert_eq!(
            manager.sources(&process),
            [record.objects[2].fd, record.objects[0].fd]
        );
        // A message sent through the supervisor's fd shows in the host-side statistics.
        let fd = manager.fds[0].as_fd();
        Queue::open(fd)
            .expect("open")
            .try_send(b"hello")
            .expect("send");
        let stats = channel_stats(&dir).expect("stats");
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[0].name, "jobs");
        assert_eq!(stats[0].stats.sent_messages, 1);
        assert_eq!(stats[0].stats.sent_bytes, 5);
        assert_eq!(stats[0].stats.depth, 1);
        assert_eq!(stats[1].stats.capacity, 4);
        drop(manager);
        assert!(matches!(
            channel_stats(&dir),
            Err(ManagerError::Open { .. } | ManagerError::Stale { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_objects_no_record() {
        let dir = temp_dir("empty");
        IpcManager::create(&IpcPlan::default(), &dir).expect("create");
        assert!(load(&dir).is_none());
        assert!(matches!(
            channel_stats(&dir),
            Err(ManagerError::NoRecord(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

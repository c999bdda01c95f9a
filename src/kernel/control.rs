//! The control socket of a running container (`control.sock` in its state directory, reachable
//! only by its owner since the state directory is 0700): one JSON request per connection, one
//! JSON reply. `ps`, `stop` and `down` go through it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const SOCKET: &str = "control.sock";

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("no running container named '{0}'")]
    NotRunning(String),
    #[error("talking to container '{name}': {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error("container '{name}' answered: {message}")]
    Refused { name: String, message: String },
}

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Ps,
    /// Stop one process (`Some`) or all of them, without restarting.
    Stop {
        process: Option<String>,
    },
    /// Stop everything and remove every kernel object.
    Down,
    /// What `hydra exec` needs to join a running process.
    Inspect {
        process: String,
    },
}

/// A running process as `hydra exec` joins it: its init's host pid, its cgroups, and the
/// identity, environment, limits and security level its command got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecInfo {
    pub pid: i32,
    pub cgroups: Vec<PathBuf>,
    pub level: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
    pub env: Vec<String>,
    pub workdir: String,
    pub max_files: Option<u64>,
    pub max_file_size: Option<u64>,
    pub rootless: bool,
    /// Paths Landlock leaves writable at `strict`.
    pub writable: Vec<String>,
}

/// One process as `ps` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessStatus {
    pub container: String,
    pub process: String,
    /// Host pid of the process's init (pid 1 inside), while it runs.
    pub pid: Option<i32>,
    pub state: String,
    pub restarts: u32,
    pub health: String,
    pub uptime_secs: Option<u64>,
    pub exit_code: Option<i32>,
    /// The process's cgroup directories (for `stats`).
    pub cgroups: Vec<PathBuf>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub ok: bool,
    pub error: Option<String>,
    pub processes: Vec<ProcessStatus>,
    #[serde(default)]
    pub exec: Option<ExecInfo>,
}

impl Reply {
    pub fn ok(processes: Vec<ProcessStatus>) -> Self {
        Reply {
            ok: true,
            error: None,
            processes,
            exec: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Reply {
            ok: false,
            error: Some(message.into()),
            processes: Vec::new(),
            exec: None,
        }
    }
}

/// Running containers of the calling user (those with a control socket): (name, state dir).
pub fn running_containers() -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(super::state::base_dir()) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(_, p)| p.join(SOCKET).exists())
        .collect();
    found.sort();
    found
}

/// The state directory of the running container `name`.
pub fn container_dir(name: &str) -> Result<PathBuf, ControlError> {
    let dir = super::state::base_dir().join(name);
    if dir.join(SOCKET).exists() {
        Ok(dir)
    } else {
        Err(ControlError::NotRunning(name.to_string()))
    }
}

/// Sends one request to the container whose state directory is `dir`.
pub fn request(name: &str, dir: &Path, req: &Request) -> Result<Reply, ControlError> {
    let io = |source| ControlError::Io {
        name: name.to_string(),
        source,
    };
    let mut stream = UnixStream::connect(dir.join(SOCKET)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ControlError::NotRunning(name.to_string())
        }
        _ => io(e),
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| io(e.into()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    let reply: Reply = serde_json::from_str(&answer).map_err(|e| io(e.into()))?;
    match (&reply.ok, &reply.error) {
        (false, Some(message)) => Err(ControlError::Refused {
            name: name.to_string(),
            message: message.clone(),
        }),
        _ => Ok(reply),
    }
}

/// Reads one request from a freshly accepted connection (bounded wait: a silent client cannot
/// hold the supervisor).
pub fn read_request(stream: &UnixStream) -> Option<Request> {
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut line = String::new();
    BufReader::new(stream)
        .take(64 * 1024)
        .read_line(&mut line)
        .ok()?;
    serde_json::from_str(&line).ok()
}

/// Writes the reply (best effort: the client may be gone).
pub fn write_reply(mut stream: &UnixStream, reply: &Reply) {
    if let Ok(mut line) = serde_json::to_string(reply) {
        line.push('\n');
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        let _ = stream.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json() {
        let req = Request::Stop {
            process: Some("worker.1".into()),
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(text, r#"{"cmd":"stop","process":"worker.1"}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"ps"}"#).unwrap(),
            Request::Ps
        );
    }
}

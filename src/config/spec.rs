//! `ProcessSpec`: everything hydra needs to know to start one virtual process, with units
//! resolved and names checked. `hydra run` builds one from flags; `hydra up` builds one per
//! virtual process from the YAML file.

use std::path::PathBuf;

use thiserror::Error;

use crate::net::NetMode;
use crate::security::SecurityLevel;

/// A spec that cannot describe a valid virtual process.
#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    #[error("invalid name '{0}' (use letters, digits, '_', '.', '-'; start with a letter or digit; at most 63 characters)")]
    Name(String),
    #[error("invalid hostname '{0}' (at most 64 characters of letters, digits, '-', '.')")]
    Hostname(String),
    #[error("invalid environment variable '{0}' (expected KEY=VALUE or KEY)")]
    Env(String),
    #[error("invalid volume '{0}' (expected /host/path:/container/path[:ro|:rw])")]
    Volume(String),
    #[error("{0} must be an absolute path")]
    NotAbsolute(String),
    #[error("no command given (put it after --)")]
    NoCommand,
    #[error("invalid user '{0}' (expected UID[:GID] or a user name from the image's /etc/passwd)")]
    User(String),
}

/// Resource limits of one virtual process. `None` leaves a limit at what hydra inherited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Memory in bytes (cgroup).
    pub memory: Option<u64>,
    /// CPU in thousandths of one CPU (cgroup quota).
    pub cpu_millis: Option<u64>,
    /// Number of tasks (cgroup).
    pub pids: Option<u64>,
    /// RLIMIT_NOFILE.
    pub max_files: Option<u64>,
    /// RLIMIT_FSIZE in bytes.
    pub max_file_size: Option<u64>,
}

impl Limits {
    /// Whether any limit needs a cgroup.
    pub fn needs_cgroup(&self) -> bool {
        self.memory.is_some() || self.cpu_millis.is_some() || self.pids.is_some()
    }
}

/// A host path bind-mounted into the process.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

impl Volume {
    /// Parses `SRC:DST[:ro|:rw]`. Both paths must be absolute.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, read_only) = match parts.as_slice() {
            [s, t] => (*s, *t, false),
            [s, t, "ro"] => (*s, *t, true),
            [s, t, "rw"] => (*s, *t, false),
            _ => return Err(SpecError::Volume(text.to_string())),
        };
        if source.is_empty() || target.is_empty() {
            return Err(SpecError::Volume(text.to_string()));
        }
        for path in [source, target] {
            if !path.starts_with('/') {
                return Err(SpecError::NotAbsolute(format!("volume path '{path}'")));
            }
        }
        Ok(Volume {
            source: PathBuf::from(source),
            target: target.to_string(),
            read_only,
        })
    }
}

/// The user a process runs as, as written; resolved against the image's /etc/passwd at launch.
#[derive(Debug, Clone, PartialEq)]
pub enum UserSpec {
    Ids { uid: u32, gid: Option<u32> },
    Name { user: String, group: Option<String> },
}

impl UserSpec {
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let bad = || SpecError::User(text.to_string());
        let (user, group) = match text.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (text, None),
        };
        if user.is_empty() || group == Some("") {
            return Err(bad());
        }
        match user.parse::<u32>() {
            Ok(uid) => {
                let gid = match group {
                    Some(g) => Some(g.parse::<u32>().map_err(|_| bad())?),
                    None => None,
                };
                Ok(UserSpec::Ids { uid, gid })
            }
            Err(_) => Ok(UserSpec::Name {
                user: user.to_string(),
                group: group.map(str::to_string),
            }),
        }
    }
}

/// One virtual process, ready to plan.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The container this process belongs to (`hydra run`: its own name).
    pub container: String,
    /// The process name (`worker.0`), also the default hostname.
    pub name: String,
    pub hostname: String,
    pub rootfs: PathBuf,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<UserSpec>,
    pub net: NetMode,
    /// `partial` only: it may open connections to the host and beyond (`egress: allow`).
    pub egress: bool,
    /// `hydra run -p` mappings (`up` maps ports container-wide, in its plan).
    pub ports: Vec<crate::net::ports::PortMapping>,
    pub security: SecurityLevel,
    pub read_only: bool,
    /// Run hydra's pid-1 init in front of the command.
    pub init: bool,
    pub volumes: Vec<Volume>,
    pub limits: Limits,
}

/// Checks a container or process name: it becomes a cgroup and state directory name.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(SpecError::Name(name.to_string()))
    }
}

/// Checks a hostname against the kernel's limit and the usual character set.
pub fn check_hostname(host: &str) -> Result<(), SpecError> {
    let ok = !host.is_empty()
        && host.len() <= 64
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::Hostname(host.to_string()))
    }
}

/// Parses `KEY=VALUE`; a bare `KEY` takes the value from hydra's own environment (as
/// `docker run -e KEY` does) and is dropped when hydra has none.
pub fn parse_env(text: &str) -> Result<Option<(String, String)>, SpecError> {
    let (key, value) = match text.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (text, None),
    };
    let key_ok = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !key_ok || text.contains('\0') {
        return Err(SpecError::Env(text.to_string()));
    }
    let value = match value {
        Some(v) => v,
        None => match std::env::var(key) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        },
    };
    Ok(Some((key.to_string(), value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("web_server").is_ok());
        assert!(check_name("worker.0").is_ok());
        assert!(check_name("run-1a2b3c").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn volumes() {
        let v = Volume::parse("/srv/data:/data:ro").unwrap();
        assert_eq!(v.source, PathBuf::from("/srv/data"));
        assert_eq!(v.target, "/data");
        assert!(v.read_only);
        assert!(!Volume::parse("/a:/b").unwrap().read_only);
        for bad in ["/a", "a:/b", "/a:b", "/a:/b:x", "/a:/b:ro:z", ":/b"] {
            assert!(Volume::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users() {
        assert_eq!(
            UserSpec::parse("1000:100"),
            Ok(UserSpec::Ids {
                uid: 1000,
                gid: Some(100)
            })
        );
        assert_eq!(
            UserSpec::parse("1000"),
            Ok(UserSpec::Ids {
                uid: 1000,
                gid: None
            })
        );
        assert_eq!(
            UserSpec::parse("app"),
            Ok(UserSpec::Name {
                user: "app".into(),
                group: None
            })
        );
        assert!(UserSpec::parse("1000:x").is_err());
        assert!(UserSpec::parse(":1").is_err());
        assert!(UserSpec::parse("1:").is_err());
    }

    #[test]
    fn env() {
        assert_eq!(
            parse_env("A=b=c"),
            Ok(Some(("A".to_string(), "b=c".to_string())))
        );
        assert!(parse_env("1A=x").is_err());
        assert!(parse_env("=x").is_err());
        assert_eq!(parse_env("HYDRA_SURELY_UNSET_VAR"), Ok(None));
    }
}

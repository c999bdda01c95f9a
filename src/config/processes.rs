//! One `processes:` entry of the YAML file → `ProcessDef`, with every value of the entry
//! checked on its own. Checks across entries (names, `depends_on`, limits against the
//! container's) are `validate`'s; for them this keeps the positions in `ProcessSpans`.

use std::collections::HashMap;

use serde_saphyr::{Location, Spanned};

use super::app::{HealthcheckDef, ProcessDef, ResourcesDef, RestartPolicy, VolumeMount};
use super::error::ConfigError;
use super::fields::{place, Checker};
use super::spec::{check_name, parse_env, Limits, UserSpec};
use super::words;
use super::yaml::{Command, Env, HealthcheckRaw, ProcessRaw, Text};

/// Healthcheck defaults (Compose's interval and retries; a shorter timeout).
const HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const HEALTH_RETRIES: u32 = 3;

/// Where the parts of a process that other checks refer to were written.
#[derive(Debug, Clone)]
pub struct ProcessSpans {
    pub name: Location,
    /// One per `depends_on` entry kept (duplicates dropped), same order.
    pub depends_on: Vec<Location>,
    pub memory: Option<Location>,
    pub cpu: Option<Location>,
    pub pids: Option<Location>,
    /// `egress: allow`, which needs `mode: partial`.
    pub egress: Option<Location>,
}

/// Reads one process. `volumes` are the names declared at the top level.
pub fn process(
    check: &Checker<'_>,
    raw: &Spanned<ProcessRaw>,
    resources: &ResourcesDef,
    volumes: &[String],
) -> Result<(ProcessDef, ProcessSpans), ConfigError> {
    let p = &raw.value;
    let name_text = p
        .name
        .as_ref()
        .ok_or_else(|| check.missing(raw, "name", "every process needs a name"))?;
    let name = check.name("name", name_text)?;
    let command = match &p.command {
        Some(c) => command(check, "command", c)?,
        None => {
            return Err(check.missing(
                raw,
                "command",
                &format!("process '{name}' needs a command to run"),
            ))
        }
    };
    let count = match &p.count {
        Some(t) => {
            let count: u32 = check.positive("count", t)?;
            let last = format!("{name}.{}", count - 1);
            if count > 1 && check_name(&last).is_err() {
                return Err(check.at(
                    t,
                    format!("count: the virtual processes of '{name}' would be named up to '{last}', longer than the 63 characters a name may have"),
                ));
            }
            count
        }
        None => 1,
    };
    let env = match &p.env {
        Some(e) => env(check, e)?,
        None => Vec::new(),
    };

    let mut limits = Limits {
        max_files: resources.max_files,
        max_file_size: resources.max_file_size,
        ..Limits::default()
    };
    let mut spans = ProcessSpans {
        name: name_text.referenced,
        depends_on: Vec::new(),
        memory: None,
        cpu: None,
        pids: None,
        egress: None,
    };
    if let Some(l) = &p.limits {
        if let Some(t) = &l.value.memory {
            limits.memory = Some(check.size("memory", t)?);
            spans.memory = Some(t.referenced);
        }
        if let Some(t) = &l.value.cpu {
            limits.cpu_millis = Some(check.cpus("cpu", t)?);
            spans.cpu = Some(t.referenced);
        }
        if let Some(t) = &l.value.pids {
            limits.pids = Some(check.positive("pids", t)?);
            spans.pids = Some(t.referenced);
        }
    }

    let priority = match &p.priority {
        Some(t) => Some(check.int("priority", t, -20..=19, "a nice value from -20 to 19")? as i32),
        None => None,
    };
    let restart = match &p.restart {
        Some(t) => restart(check, t)?,
        None => RestartPolicy::No,
    };

    let mut depends_on: Vec<String> = Vec::new();
    if let Some(list) = &p.depends_on {
        for dep in &list.value {
            if !depends_on.contains(&dep.value) {
                depends_on.push(dep.value.clone());
                spans.depends_on.push(dep.referenced);
            }
        }
    }

    let user = match &p.user {
        Some(t) => Some(UserSpec::parse(&t.value).map_err(|e| check.at(t, format!("user: {e}")))?),
        None => None,
    };
    let workdir = match &p.workdir {
        Some(t) => Some(check.absolute("workdir", t)?),
        None => None,
    };
    let read_only = match &p.read_only {
        Some(t) => check.boolean("read_only", t)?,
        None => false,
    };
    let egress = match &p.egress {
        Some(t) => {
            spans.egress = Some(t.referenced);
            check.choice("egress", t, &[("allow", true), ("deny", false)])?
        }
        None => false,
    };
    let healthcheck = match &p.healthcheck {
        Some(h) => Some(healthcheck(check, h)?),
        None => None,
    };
    let mut mounts: Vec<VolumeMount> = Vec::new();
    if let Some(list) = &p.volumes {
        for item in &list.value {
            let mount = mount(check, item, volumes)?;
            if mounts.iter().any(|m| m.target == mount.target) {
                return Err(check.at(
                    item,
                    format!("volumes: two volumes are mounted on {}", mount.target),
                ));
            }
            mounts.push(mount);
        }
    }

    let def = ProcessDef {
        name,
        command,
        count,
        env,
        limits,
        priority,
        restart,
        depends_on,
        user,
        workdir,
        read_only,
        healthcheck,
        volumes: mounts,
        egress,
    };
    Ok((def, spans))
}

/// `command:` (also `healthcheck.command:`): a line split like a shell would, or a list.
fn command(
    check: &Checker<'_>,
    key: &str,
    raw: &Spanned<Command>,
) -> Result<Vec<String>, ConfigError> {
    let words = match &raw.value {
        Command::Line(line) => {
            if line.contains('\0') {
                return Err(check.at(raw, format!("{key}: the command contains a NUL character")));
            }
            words::split(line).map_err(|e| check.at(raw, format!("{key}: {e}")))?
        }
        Command::Words(list) => {
            if let Some(bad) = list.iter().find(|w| w.value.contains('\0')) {
                return Err(check.at(bad, format!("{key}: a word contains a NUL character")));
            }
            list.iter().map(|w| w.value.clone()).collect()
        }
        Command::Invalid(found) => {
            return Err(check.at(
                raw,
                format!(
                    "{key}: expected a command line or a list of words, found {}",
                    found.describe()
                ),
            ))
        }
    };
    match words.first() {
        None => Err(check.at(
            raw,
            format!("{key}: expected a program to run, found an empty command"),
        )),
        Some(first) if first.is_empty() => {
            Err(check.at(raw, format!("{key}: the program name is empty")))
        }
        Some(_) => Ok(words),
    }
}

/// `env:` — a mapping or a list; numbers and booleans become their text. A name with no value
/// takes it from hydra's own environment and is dropped when hydra has none (as
/// `hydra run -e NAME` does).
fn env(check: &Checker<'_>, raw: &Spanned<Env>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: HashMap<String, Location> = HashMap::new();
    let mut add = |key: &Text, value: Option<&str>, at: &Location| -> Result<(), ConfigError> {
        if !env_name_ok(&key.value) {
            return Err(check.at(
                key,
                format!(
                    "env: invalid variable name '{}' (expected letters, digits and '_', not starting with a digit)",
                    key.value
                ),
            ));
        }
        if let Some(first) = seen.get(&key.value) {
            return Err(check.at(
                key,
                format!(
                    "env: {} is set twice (first at {})",
                    key.value,
                    place(first)
                ),
            ));
        }
        seen.insert(key.value.clone(), key.referenced);
        let text = match value {
            Some(v) => format!("{}={v}", key.value),
            None => key.value.clone(),
        };
        match parse_env(&text) {
            Ok(Some(pair)) => out.push(pair),
            Ok(None) => {}
            Err(_) => {
                return Err(check.error(
                    at,
                    format!("env: the value of {} contains a NUL character", key.value),
                ))
            }
        }
        Ok(())
    };
    match &raw.value {
        Env::Map(pairs) => {
            for (key, value) in pairs {
                add(key, value.value.as_deref(), &value.referenced)?;
            }
        }
        Env::List(items) => {
            for item in items {
                let (name, value) = match item.value.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (item.value.as_str(), None),
                };
                let key = Spanned::new(name.to_string(), item.referenced, item.defined);
                add(&key, value, &item.referenced)?;
            }
        }
        Env::Invalid(found) => {
            return Err(check.at(
                raw,
                format!(
                    "env: expected a mapping NAME: value or a list of NAME=value, found {}",
                    found.describe()
                ),
            ))
        }
    }
    Ok(out)
}

/// The rule `spec::parse_env` applies to names.
fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `restart: no | always | on-failure | on-failure:N`.
fn restart(check: &Checker<'_>, t: &Text) -> Result<RestartPolicy, ConfigError> {
    const EXPECTED: &str =
        "no, always, on-failure or on-failure:N (N a whole number of at least 1)";
    match t.value.trim() {
        "no" => Ok(RestartPolicy::No),
        "always" => Ok(RestartPolicy::Always),
        "on-failure" => Ok(RestartPolicy::OnFailure { max: None }),
        other => match other.strip_prefix("on-failure:").map(str::parse::<u32>) {
            Some(Ok(max)) if max >= 1 => Ok(RestartPolicy::OnFailure { max: Some(max) }),
            _ => Err(check.expected("restart", t, EXPECTED)),
        },
    }
}

/// `healthcheck: {command, interval, timeout, retries}`.
fn healthcheck(
    check: &Checker<'_>,
    raw: &Spanned<HealthcheckRaw>,
) -> Result<HealthcheckDef, ConfigError> {
    let h = &raw.value;
    let command = match &h.command {
        Some(c) => command(check, "healthcheck.command", c)?,
        None => {
            return Err(check.missing(
                raw,
                "command",
                "the command that checks the process's health",
            ))
        }
    };
    let interval = match &h.interval {
        Some(t) => check.duration("healthcheck.interval", t)?,
        None => HEALTH_INTERVAL,
    };
    let timeout = match &h.timeout {
        Some(t) => check.duration("healthcheck.timeout", t)?,
        None => HEALTH_TIMEOUT,
    };
    let retries = match &h.retries {
        Some(t) => check.positive("healthcheck.retries", t)?,
        None => HEALTH_RETRIES,
    };
    Ok(HealthcheckDef {
        command,
        interval,
        timeout,
        retries,
    })
}

/// A process's `volumes:` entry `NAME:/target[:ro|:rw]`, `NAME` declared at the top level.
fn mount(check: &Checker<'_>, item: &Text, volumes: &[String]) -> Result<VolumeMount, ConfigError> {
    let parts: Vec<&str> = item.value.split(':').collect();
    let (volume, target, read_only) = match parts.as_slice() {
        [v, t] => (*v, *t, false),
        [v, t, "ro"] => (*v, *t, true),
        [v, t, "rw"] => (*v, *t, false),
        _ => return Err(check.expected("volumes", item, "VOLUME:/path or VOLUME:/path:ro")),
    };
    if !volumes.iter().any(|v| v == volume) {
        let declared = if volumes.is_empty() {
            "no volumes are declared".to_string()
        } else {
            format!("declared: {}", volumes.join(", "))
        };
        return Err(check.at(
            item,
            format!("volumes: volume '{volume}' is not declared under the top-level volumes ({declared})"),
        ));
    }
    if !target.starts_with('/') {
        return Err(check.at(
            item,
            format!("volumes: expected an absolute path to mount '{volume}' on, found '{target}'"),
        ));
    }
    Ok(VolumeMount {
        volume: volume.to_string(),
        target: target.to_string(),
        read_only,
    })
}

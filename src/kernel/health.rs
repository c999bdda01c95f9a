//! Healthchecks: a command run inside a process (through `hydra exec`) every interval; a
//! process is unhealthy after `retries` failures in a row, healthy after one success.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::HealthcheckDef;

/// What `ps` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::None => "none",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// One process's healthcheck state.
#[derive(Debug)]
pub struct Checker {
    def: HealthcheckDef,
    pub health: Health,
    failures: u32,
    next: Instant,
    probe: Option<(Child, Instant)>,
}

impl Checker {
    pub fn new(def: HealthcheckDef) -> Self {
        let next = Instant::now() + def.interval;
        Checker {
            def,
            health: Health::Starting,
            failures: 0,
            next,
            probe: None,
        }
    }

    /// When the supervisor must look again: the next check, or soon while a probe runs.
    pub fn deadline(&self) -> Instant {
        match &self.probe {
            Some((_, until)) => (*until).min(Instant::now() + Duration::from_millis(50)),
            None => self.next,
        }
    }

    /// Starts a due probe or collects a finished (or overdue) one. `target` is
    /// `container/process`.
    pub fn tick(&mut self, target: &str) {
        let now = Instant::now();
        if let Some((child, until)) = &mut self.probe {
            let verdict = match child.try_wait() {
                Ok(Some(status)) => Some(status.success()),
                Ok(None) if now >= *until => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Some(false)
                }
                Ok(None) => None,
                Err(_) => Some(false),
            };
            if let Some(ok) = verdict {
                self.probe = None;
                self.record(ok);
                self.next = now + self.def.interval;
            }
            return;
        }
        if now < self.next {
            return;
        }
        let spawned = Command::new("/proc/self/exe")
            .args(["exec", target, "--"])
            .args(&self.def.command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => self.probe = Some((child, now + self.def.timeout)),
            Err(_) => {
                self.record(false);
                self.next = now + self.def.interval;
            }
        }
    }

    fn record(&mut self, ok: bool) {
        if ok {
            self.failures = 0;
            self.health = Health::Healthy;
        } else {
            self.failures += 1;
            if self.failures >= self.def.retries {
                self.health = Health::Unhealthy;
            }
        }
    }

    /// Stops a running probe (the process is going away).
    pub fn cancel(&mut self) {
        if let Some((mut child, _)) = self.probe.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

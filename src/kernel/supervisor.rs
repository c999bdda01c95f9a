//! HydraKernel's supervisor: starts every virtual process of a Plan in order, captures their
//! output, restarts them by policy, answers the control socket, and on shutdown (Ctrl-C,
//! SIGTERM, `hydra down`, or every process done) stops them and removes every kernel object.
//! One thread, one poll loop.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use thiserror::Error;

use super::control::{self, ProcessStatus, Reply, Request};
use super::health::{Checker, Health};
use super::logs::{self, LogFile};
use super::plan::{Plan, PlannedProcess};
use super::state::{StateDir, StateError};
use crate::cgroups::{self, Accounting, Cgroup, CgroupError, Events};
use crate::config::RestartPolicy;
use crate::ipc::manager::IpcManager;
use crate::process::handshake::{self, Received};
use crate::process::launch::LaunchPlan;
use crate::process::stage::StepError;
use crate::process::{self, outcome, supervise, Extras, Launched, ProcessError};

/// How long stopped processes get between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(10);
/// Restart back-off: doubles from the first delay up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum SupervisorError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Net(#[from] crate::net::setup::NetError),
    #[error("{process}: {source}")]
    Process {
        process: String,
        source: ProcessError,
    },
    #[error("creating volume {name}: {errno}")]
    Volume { name: String, errno: Errno },
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("{step}: {errno}")]
    Sys { step: &'static str, errno: Errno },
    #[error(transparent)]
    Ipc(#[from] crate::ipc::manager::ManagerError),
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started yet (waiting for its turn or a restart).
    Waiting,
    Running,
    /// Ended and will not be restarted.
    Exited(i32),
    /// Ended by failure after its restarts ran out.
    Failed(i32),
    /// Stopped on request.
    Stopped,
}

impl Phase {
    fn name(self) -> String {
        match self {
            Phase::Waiting => "waiting".into(),
            Phase::Running => "running".into(),
            Phase::Exited(c) => format!("exited ({c})"),
            Phase::Failed(c) => format!("failed ({c})"),
            Phase::Stopped => "stopped".into(),
        }
    }
}

/// A running instance: the cloned child and the pipes the supervisor reads.
struct Live {
    launched: Launched,
    plan: LaunchPlan,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    pending: [Vec<u8>; 2],
    channel_open: bool,
    failure: Option<StepError>,
    started: Instant,
    /// The cgroup's counters when this run started (they survive restarts).
    events_at_start: Events,
}

/// One virtual process of the container.
struct Slot {
    planned: PlannedProcess,
    cgroup: Option<Cgroup>,
    log: LogFile,
    phase: Phase,
    live: Option<Live>,
    restarts: u32,
    restart_at: Option<Instant>,
    stop_requested: bool,
    /// SIGTERM was sent; SIGKILL follows at this instant.
    kill_at: Option<Instant>,
    /// The healthcheck of the current run, if the process has one.
    checker: Option<Checker>,
    /// Its links, claimed once for the container's life (restarts reuse them, so the
    /// port mappings never change).
    links: crate::net::veth::LinkPlan,
    /// Its `/etc/hosts` naming the other members of its internal networks.
    hosts: Option<std::path::PathBuf>,
}

/// How output reaches the terminal of a foreground `up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// `name | line` on hydra's stdout, names padded to the longest.
    Prefixed,
    /// Detached: logs only.
    None,
}

pub struct Supervisor {
    plan: Plan,
    state: StateDir,
    container_cgroup: Option<Cgroup>,
    /// Named volumes: (name, the tmpfs mountpoint in the supervisor's private mount namespace).
    volumes: Vec<(String, std::path::PathBuf)>,
    /// Where the processes' private tmpfs is mounted (beside the volumes).
    layer: std::path::PathBuf,
    slots: Vec<Slot>,
    listener: UnixListener,
    signals: SignalFd,
    echo: Echo,
    /// Width of the name column of echoed output.
    width: usize,
    /// The container is being brought down: nothing starts or restarts any more.
    shutting_down: bool,
    /// Port mappings served by hydra itself: all rootless, the IPv6 side as root.
    userspace: Option<crate::net::userspace::Ports>,
    /// Local clients' connections to the mappings go straight to the processes while kept.
    redirect: Option<crate::net::redirect::SocketRedirect>,
    /// The channels and shared memory, created before any process and kept until the end.
    ipc: IpcManager,
    /// hydra's own binary (resolved from /proc/self/exe), shown to processes given IPC objects.
    hydra_binary: Option<std::path::PathBuf>,
    warnings: Vec<String>,
}

fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> SupervisorError {
    move |source| SupervisorError::Io { step, source }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SupervisorError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| SupervisorError::Sys {
        step: "creating a pipe",
        errno,
    })
}

impl Supervisor {
    /// Creates the state directory, control socket, container cgroup and volumes. Nothing runs
    /// yet. The state directory names the container cgroup before it exists.
    pub fn new(plan: Plan, echo: Echo) -> Result<Self, SupervisorError> {
        let container_rel = std::path::PathBuf::from(&plan.container);
        let state = StateDir::create(&plan.container, &[("cgroup", &container_rel)])?;
        // Signals are blocked before any clone so children start with them blocked (and reset
        // them before exec); the supervisor reads them from a signalfd.
        let signals = supervise::signal_fd().map_err(|errno| SupervisorError::Sys {
            step: "blocking signals",
            errno,
        })?;
        std::fs::create_dir_all(state.path().join("logs"))
            .map_err(io("creating the log directory"))?;
        let socket = state.path().join(control::SOCKET);
        let listener = UnixListener::bind(&socket).map_err(io("creating the control socket"))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(io("securing the control socket"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("configuring the control socket"))?;
        // Every IPC object exists before the first process starts, and restarts reuse them.
        // Made before the cgroup: a failure here leaves nothing behind but the state directory
        // (removed on drop).
        let ipc = IpcManager::create(&plan.ipc, state.path())?;
        let hydra_binary = if plan.processes.iter().any(|p| !p.ipc.objects.is_empty()) {
            Some(own_binary()?)
        } else {
            None
        };
        let res = cgroups::limits::resources(&plan.limits);
        let mode = cgroups::mode::detect();
        let mut warnings = Vec::new();
        let container_cgroup = match Cgroup::create(mode, &container_rel, &res, Accounting::Full) {
            Ok(cg) => Some(cg),
            Err(e) if process::rootless() && e.is_permission() => {
                warnings.push("rootless without a delegated cgroup: limits not enforced".into());
                None
            }
            Err(e) => return Err(e.into()),
        };
        let volumes = make_volumes(&plan, state.path())?;
        let layer = state.layer_mountpoint(true)?;
        let log_dir = state.path().join("logs");
        let width = plan
            .processes
            .iter()
            .map(|p| p.spec.name.len())
            .max()
            .unwrap_or(0);
        let slots = plan
            .processes
            .iter()
            .map(|p| Slot {
                log: LogFile::new(&log_dir, &p.spec.name),
                planned: p.clone(),
                cgroup: None,
                phase: Phase::Waiting,
                live: None,
                restarts: 0,
                restart_at: None,
                stop_requested: false,
                kill_at: None,
                checker: None,
                links: Default::default(),
                hosts: None,
            })
            .collect();
        let mut supervisor = Supervisor {
            plan,
            state,
            container_cgroup,
            volumes,
            layer,
            slots,
            listener,
            signals,
            echo,
            width,
            shutting_down: false,
            warnings,
            userspace: None,
            redirect: None,
            ipc,
            hydra_binary,
        };
        supervisor.claim_network()?;
        Ok(supervisor)
    }

    /// Claims the subnets and host ports and installs the firewall rules (released on drop);
    /// rootless, binds the host ports and starts hydra's own forwarder.
    fn claim_network(&mut self) -> Result<(), SupervisorError> {
        let Some(request) = &self.plan.network else {
            return Ok(());
        };
        if process::rootless() {
            self.userspace = Some(crate::net::setup::claim_userspace(
                self.state.path(),
                &self.plan.container,
                request,
                self.slots.len(),
            )?);
            return Ok(());
        }
        let (net, ports, redirect) =
            crate::net::setup::claim(self.state.path(), &self.plan.container, request)?;
        // The IPv6 side of the mappings, served by hydra itself.
        self.userspace = ports;
        self.redirect = redirect;
        // `up` is not timed to its first process's first instruction: install it right away.
        if let Some(r) = self.redirect.as_mut() {
            r.open();
        }
        let hosts_dir = self.state.path().join("hosts");
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let name = &slot.planned.spec.name;
            slot.links = crate::net::veth::LinkPlan {
                eth0: net.endpoints.get(i).map(|e| e.subnet),
                internal: crate::net::internal::links_of(name, &net.internal),
            };
            if slot.links.internal.is_empty() {
                continue;
            }
            std::fs::create_dir_all(&hosts_dir).map_err(io("creating the hosts files"))?;
            let file = hosts_dir.join(name);
            std::fs::write(&file, crate::net::internal::hosts_file(name, &net.internal))
                .map_err(io("writing a hosts file"))?;
            slot.hosts = Some(file);
        }
        Ok(())
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Starts every process in plan order. A process that cannot be started (a set-up step
    /// failed) stops `up`: everything started so far is brought down again.
    pub fn start_all(&mut self) -> Result<(), SupervisorError> {
        for i in 0..self.slots.len() {
            if let Err(e) = self.start(i) {
                self.shutdown_now();
                return Err(e);
            }
        }
        Ok(())
    }

    fn start(&mut self, i: usize) -> Result<(), SupervisorError> {
        let container_has_cgroup = self.container_cgroup.is_some();
        let ports = self.userspace.as_ref();
        let slot = &mut self.slots[i];
        let name = slot.planned.spec.name.clone();
        let wrap = |source| SupervisorError::Process {
            process: name.clone(),
            source,
        };
        if slot.cgroup.is_none() && container_has_cgroup {
            let rel = cgroups::relative_path(&self.plan.container, &slot.planned.spec.name);
            let mut res = cgroups::limits::resources(&slot.planned.spec.limits);
            if let Some(nice) = slot.planned.priority {
                cgroups::limits::set_weight(&mut res, nice);
            }
            slot.cgroup = Some(Cgroup::create(
                cgroups::mode::detect(),
                &rel,
                &res,
                Accounting::Full,
            )?);
        }
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let null = std::fs::File::open("/dev/null").map_err(io("opening /dev/null"))?;
        let mut spec = with_volumes(&slot.planned, &self.volumes);
        if let Some(hosts) = &slot.hosts {
            spec.volumes.push(crate::config::Volume {
                source: hosts.clone(),
                target: "/etc/hosts".to_string(),
                read_only: true,
            });
        }
        let given_ipc = !slot.planned.ipc.objects.is_empty();
        let extras = Extras {
            stdio: Some([null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]),
            nice: slot.planned.priority,
            cgroup_view: slot.cgroup.as_ref().map(Cgroup::view),
            links: slot.links.clone(),
            pass_fds: self.ipc.sources(&slot.planned.ipc),
            env: slot.planned.ipc.env.clone(),
            hydra_binary: self.hydra_binary.clone().filter(|_| given_ipc),
        };
        let prepared = process::prepare(&spec, &self.layer, false, extras).map_err(wrap)?;
        // Rootless mappings reach the new process through a socket helper in its namespaces.
        let mut before_go = |child: &process::clone::Child| match ports {
            Some(ports) => ports
                .attach(i, child.pidfd.as_fd())
                .map_err(|e| crate::net::setup::NetError::from(e).into()),
            None => Ok(()),
        };
        let launched = process::spawn(&spec, &prepared.plan, slot.cgroup.as_ref(), &mut before_go)
            .map_err(wrap)?;
        drop((out_w, err_w, null));
        slot.live = Some(Live {
            launched,
            plan: prepared.plan,
            stdout: Some(out_r),
            stderr: Some(err_r),
            pending: [Vec::new(), Vec::new()],
            channel_open: true,
            failure: None,
            started: Instant::now(),
            events_at_start: slot.cgroup.as_ref().map(Cgroup::events).unwrap_or_default(),
        });
        slot.phase = Phase::Running;
        slot.restart_at = None;
        slot.checker = slot.planned.healthcheck.clone().map(Checker::new);
        Ok(())
    }

    /// Runs until every process is done or the container is brought down. Returns after
    /// everything is removed (dropping the supervisor removes it, on every path).
    pub fn run(mut self) -> Result<(), SupervisorError> {
        while !self.finished() {
            self.step()?;
        }
        Ok(())
    }

    /// Nothing runs and nothing will be restarted.
    fn finished(&self) -> bool {
        self.slots
            .iter()
            .all(|s| s.live.is_none() && s.restart_at.is_none())
            && (self.shutting_down || self.slots.iter().all(|s| s.phase != Phase::Waiting))
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .flat_map(|s| {
                let health = s
                    .live
                    .as_ref()
                    .and(s.checker.as_ref())
                    .map(Checker::deadline);
                [s.restart_at, s.live.as_ref().and(s.kill_at), health]
            })
            .flatten()
            .min()
    }

    /// One poll round.
    fn step(&mut self) -> Result<(), SupervisorError> {
        let timeout = match self.next_deadline() {
            Some(at) => {
                let ms = at.saturating_duration_since(Instant::now()).as_millis();
                PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = vec![
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
        ];
        // (slot, what): 0 pidfd, 1 stdout, 2 stderr, 3 channel
        let mut owners = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(live) = &slot.live else { continue };
            let watched: [(Option<BorrowedFd<'_>>, u8); 4] = [
                (Some(live.launched.child.pidfd.as_fd()), 0),
                (live.stdout.as_ref().map(AsFd::as_fd), 1),
                (live.stderr.as_ref().map(AsFd::as_fd), 2),
                (live.channel_open.then(|| live.launched.channel.as_fd()), 3),
            ];
            for (fd, what) in watched {
                if let Some(fd) = fd {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    owners.push((i, what));
                }
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => {
                return Err(SupervisorError::Sys {
                    step: "waiting for events",
                    errno,
                })
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            self.on_signals();
        }
        if ready[1] {
            self.on_clients();
        }
        let mut exited = Vec::new();
        for (k, &(i, what)) in owners.iter().enumerate() {
            if !ready[k + 2] {
                continue;
            }
            match what {
                0 => exited.push(i),
                1 | 2 => self.on_output(i, usize::from(what - 1)),
                _ => self.on_channel(i),
            }
        }
        for i in exited {
            self.on_exit(i);
        }
        self.on_timers()
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let sig = info.ssi_signo as i32;
            if !matches!(
                sig,
                libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
            ) {
                continue;
            }
            if self.shutting_down {
                // A second Ctrl-C: no more grace.
                for slot in &mut self.slots {
                    slot.kill_at = slot.kill_at.map(|_| Instant::now());
                }
            } else {
                self.begin_shutdown();
            }
        }
    }

    fn on_clients(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(false);
            let reply = match control::read_request(&stream) {
                Some(Request::Ps) => Reply::ok(self.status()),
                Some(Request::Stop { process }) => self.stop(process.as_deref()),
                Some(Request::Inspect { process }) => self.inspect(&process),
                Some(Request::Down) => {
                    self.begin_shutdown();
                    Reply::ok(self.status())
                }
                None => Reply::error("unreadable request"),
            };
            control::write_reply(&stream, &reply);
        }
    }

    fn on_output(&mut self, i: usize, which: usize) {
        let Some(live) = self.slots[i].live.as_mut() else {
            return;
        };
        let pipe = if which == 0 {
            &mut live.stdout
        } else {
            &mut live.stderr
        };
        let Some(fd) = pipe.as_ref() else { return };
        let mut buf = [0u8; 16 * 1024];
        let (n, ended) = match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) | Err(_) => {
                *pipe = None;
                (0, true)
            }
            Ok(n) => (n, false),
        };
        let mut lines = logs::complete_lines(&mut live.pending[which], &buf[..n]);
        if ended && !live.pending[which].is_empty() {
            // The last line had no newline: keep it all the same.
            let mut last = std::mem::take(&mut live.pending[which]);
            last.push(b'\n');
            lines.push(last);
        }
        let slot = &mut self.slots[i];
        for line in lines {
            slot.log.write(&line);
            if self.echo == Echo::Prefixed {
                echo_line(&slot.planned.spec.name, self.width, &line);
            }
        }
    }

    fn on_channel(&mut self, i: usize) {
        let Some(live) = self.slots[i].live.as_mut() else {
            return;
        };
        match handshake::receive(&live.launched.channel) {
            Received::Failure(e) => live.failure = live.failure.or(Some(e)),
            Received::Closed => live.channel_open = false,
            Received::Terminal(_) | Received::Nothing => {}
        }
    }

    /// Reaps an exited process, reports how it ended and decides on a restart.
    fn on_exit(&mut self, i: usize) {
        // Drain what is left of its output first.
        for which in 0..2 {
            while self.slots[i].live.as_ref().is_some_and(|l| {
                if which == 0 {
                    l.stdout.is_some()
                } else {
                    l.stderr.is_some()
                }
            }) {
                self.on_output(i, which);
            }
        }
        if let Some(ports) = &self.userspace {
            ports.detach(i);
        }
        let slot = &mut self.slots[i];
        let Some(mut live) = slot.live.take() else {
            return;
        };
        if let Some(checker) = slot.checker.as_mut() {
            checker.cancel();
        }
        while live.channel_open {
            match handshake::receive(&live.launched.channel) {
                Received::Failure(e) => live.failure = live.failure.or(Some(e)),
                Received::Closed | Received::Nothing => live.channel_open = false,
                Received::Terminal(_) => {}
            }
        }
        let (code, signal) = match waitid(
            Id::PIDFd(live.launched.child.pidfd.as_fd()),
            WaitPidFlag::WEXITED,
        ) {
            Ok(WaitStatus::Exited(_, code)) => (code, None),
            Ok(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, Some(sig as i32)),
            _ => (125, None),
        };
        let ended = supervise::Ended {
            code,
            signal,
            failure: live.failure,
        };
        let now = slot.cgroup.as_ref().map(Cgroup::events).unwrap_or_default();
        let events = Events {
            oom_kills: now.oom_kills.saturating_sub(live.events_at_start.oom_kills),
            pids_max_hits: now
                .pids_max_hits
                .saturating_sub(live.events_at_start.pids_max_hits),
        };
        // A process without a memory limit of its own is held by its container's.
        let mut limits = slot.planned.spec.limits.clone();
        limits.memory = limits.memory.or(self.plan.limits.memory);
        let outcome = outcome::decide(&live.plan, &ended, events, &limits);
        let name = slot.planned.spec.name.clone();
        for message in &outcome.messages {
            let line = format!("hydra: {}/{name}: {message}\n", self.plan.container);
            slot.log.write(line.as_bytes());
            if self.echo == Echo::Prefixed {
                eprint!("{line}");
            }
        }
        let shutting_down = self.shutting_down;
        slot.kill_at = None;
        let wants_restart = match &slot.planned.restart {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure { max } => {
                outcome.code != 0 && max.is_none_or(|m| slot.restarts < m)
            }
        };
        // A set-up failure is not something a restart fixes.
        let setup_failed = ended
            .failure
            .is_some_and(|f| f.stage != process::stage::Stage::Exec);
        if slot.stop_requested || shutting_down {
            slot.phase = Phase::Stopped;
        } else if wants_restart && !setup_failed {
            let delay = BACKOFF_FIRST
                .saturating_mul(1 << slot.restarts.min(10))
                .min(BACKOFF_MAX);
            slot.restarts += 1;
            slot.phase = Phase::Waiting;
            slot.restart_at = Some(Instant::now() + delay);
        } else if outcome.code != 0 && !matches!(slot.planned.restart, RestartPolicy::No) {
            slot.phase = Phase::Failed(outcome.code);
        } else {
            slot.phase = Phase::Exited(outcome.code);
        }
    }

    fn on_timers(&mut self) -> Result<(), SupervisorError> {
        let now = Instant::now();
        for slot in &mut self.slots {
            if let (Some(live), Some(at)) = (&slot.live, slot.kill_at) {
                if at <= now {
                    supervise::send_signal(&live.launched.child, libc::SIGKILL);
                    slot.kill_at = None;
                }
            }
        }
        for slot in &mut self.slots {
            if let (Some(_), Some(checker)) = (&slot.live, slot.checker.as_mut()) {
                checker.tick(&format!(
                    "{}/{}",
                    self.plan.container, slot.planned.spec.name
                ));
            }
        }
        let due: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].restart_at.is_some_and(|at| at <= now))
            .collect();
        for i in due {
            self.slots[i].restart_at = None;
            if self.shutting_down {
                self.slots[i].phase = Phase::Stopped;
                continue;
            }
            if let Err(e) = self.start(i) {
                let name = self.slots[i].planned.spec.name.clone();
                let line = format!(
                    "hydra: {}/{name}: restart failed: {e}\n",
                    self.plan.container
                );
                self.slots[i].log.write(line.as_bytes());
                self.slots[i].phase = Phase::Failed(125);
            }
        }
        Ok(())
    }

    fn stop(&mut self, process: Option<&str>) -> Reply {
        let mut matched = false;
        for slot in &mut self.slots {
            if process.is_some_and(|p| p != slot.planned.spec.name && p != slot.planned.group) {
                continue;
            }
            matched = true;
            terminate(slot);
        }
        if !matched {
            return Reply::error(format!("no process named '{}'", process.unwrap_or("")));
        }
        Reply::ok(self.status())
    }

    /// SIGTERM to every process (through its init), SIGKILL after the grace period.
    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        for slot in &mut self.slots {
            terminate(slot);
        }
    }

    /// Kills everything at once and waits (a failed `up`).
    fn shutdown_now(&mut self) {
        self.shutting_down = true;
        for slot in &mut self.slots {
            if let Some(live) = slot.live.take() {
                supervise::kill_and_reap(&live.launched.child);
            }
        }
    }

    /// What `hydra exec` needs to join `process`.
    fn inspect(&self, process: &str) -> Reply {
        let Some(slot) = self.slots.iter().find(|s| s.planned.spec.name == process) else {
            return Reply::error(format!("no process named '{process}'"));
        };
        let Some(live) = &slot.live else {
            return Reply::error(format!("{process} is not running ({})", slot.phase.name()));
        };
        let spec = &slot.planned.spec;
        let identity = &live.plan.privileges.identity;
        // `exec` joins without the IPC fds: their variables would name fds it does not have.
        let ipc_vars: Vec<String> = slot
            .planned
            .ipc
            .env
            .iter()
            .map(|(k, _)| format!("{k}="))
            .collect();
        let env = live
            .plan
            .exec
            .envp
            .strings()
            .iter()
            .map(|e| e.to_string_lossy().into_owned())
            .filter(|e| !ipc_vars.iter().any(|v| e.starts_with(v.as_str())))
            .collect();
        let mut reply = Reply::ok(Vec::new());
        reply.exec = Some(control::ExecInfo {
            pid: live.launched.child.pid.as_raw(),
            cgroups: slot.cgroup.as_ref().map(Cgroup::dirs).unwrap_or_default(),
            level: spec.security.name().to_string(),
            uid: identity.uid,
            gid: identity.gid,
            groups: identity.groups.clone(),
            home: identity.home.clone(),
            env,
            workdir: live.plan.workdir.path.to_string_lossy().into_owned(),
            max_files: spec.limits.max_files,
            max_file_size: spec.limits.max_file_size,
            rootless: process::rootless(),
            writable: process::writable_paths(&with_volumes(&slot.planned, &self.volumes)),
        });
        reply
    }

    fn status(&self) -> Vec<ProcessStatus> {
        self.slots
            .iter()
            .map(|slot| ProcessStatus {
                container: self.plan.container.clone(),
                process: slot.planned.spec.name.clone(),
                pid: slot.live.as_ref().map(|l| l.launched.child.pid.as_raw()),
                state: slot.phase.name(),
                restarts: slot.restarts,
                health: slot
                    .checker
                    .as_ref()
                    .filter(|_| slot.live.is_some())
                    .map_or(Health::None, |c| c.health)
                    .name()
                    .into(),
                uptime_secs: slot.live.as_ref().map(|l| l.started.elapsed().as_secs()),
                exit_code: match slot.phase {
                    Phase::Exited(c) | Phase::Failed(c) => Some(c),
                    _ => None,
                },
                cgroups: slot.cgroup.as_ref().map(Cgroup::dirs).unwrap_or_default(),
            })
            .collect()
    }
}

impl Drop for Supervisor {
    /// Removes every kernel object: processes, process cgroups, the container cgroup, volumes,
    /// the state directory (last, so a crash in between leaves the record for gc). Runs on every
    /// path out of `up`, a failed start included.
    fn drop(&mut self) {
        self.shutdown_now();
        for slot in &mut self.slots {
            if let Some(mut cg) = slot.cgroup.take() {
                let _ = cg.destroy();
            }
        }
        if let Some(mut cg) = self.container_cgroup.take() {
            let _ = cg.destroy();
        }
        // The forwarder's threads and helpers stop, and the redirect goes, before the claim is
        // released.
        self.userspace = None;
        self.redirect = None;
        if let Err(e) = crate::net::setup::release(self.state.path()) {
            eprintln!("hydra: {}: removing the network: {e}", self.plan.container);
        }
        // Unmounted before the state directory goes (they live in this process's own mount
        // namespace, so the host never held them).
        for (_, path) in self.volumes.drain(..) {
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_file(self.state.path().join(control::SOCKET));
    }
}

/// The process's spec with its named volumes as binds: a process's mount namespace is a copy of
/// the supervisor's, where the volumes are mounted.
fn with_volumes(
    planned: &PlannedProcess,
    volumes: &[(String, std::path::PathBuf)],
) -> crate::config::ProcessSpec {
    let mut spec = planned.spec.clone();
    for (volume, target, read_only) in &planned.volumes {
        if let Some((_, path)) = volumes.iter().find(|(n, _)| n == volume) {
            spec.volumes.push(crate::config::Volume {
                source: path.clone(),
                target: target.clone(),
                read_only: *read_only,
            });
        }
    }
    spec
}

/// Mounts the named volumes: tmpfs mounts of their size at `<state>/volumes/<name>` in a mount
/// namespace of the supervisor's own (made private first), so the host never sees them and they
/// vanish with the supervisor, even after a crash. Processes, cloned from the supervisor, bind
/// them from there.
fn make_volumes(
    plan: &Plan,
    state: &std::path::Path,
) -> Result<Vec<(String, std::path::PathBuf)>, SupervisorError> {
    if plan.volumes.is_empty() {
        return Ok(Vec::new());
    }
    let private = |errno| SupervisorError::Sys {
        step: "giving the supervisor a private mount namespace for the named volumes",
        errno,
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(private)?;
    let rec_private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
    nix::mount::mount(None::<&str>, "/", None::<&str>, rec_private, None::<&str>)
        .map_err(private)?;
    let mut volumes = Vec::new();
    for (name, size) in &plan.volumes {
        let path = state.join("volumes").join(name);
        std::fs::create_dir_all(&path).map_err(io("creating a volume directory"))?;
        let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV;
        let data = format!("size={size},mode=1777");
        nix::mount::mount(
            Some("tmpfs"),
            &path,
            Some("tmpfs"),
            flags,
            Some(data.as_str()),
        )
        .map_err(|errno| SupervisorError::Volume {
            name: name.clone(),
            errno,
        })?;
        volumes.push((name.clone(), path));
    }
    Ok(volumes)
}

/// The running hydra binary, from /proc/self/exe: bound read-only into processes given IPC
/// objects.
fn own_binary() -> Result<std::path::PathBuf, SupervisorError> {
    let path = std::fs::read_link("/proc/self/exe").map_err(io("finding hydra's own binary"))?;
    // A binary replaced since it started shows as `path (deleted)`: nothing to bind then.
    if !path.is_file() {
        return Err(SupervisorError::Io {
            step: "finding hydra's own binary",
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} no longer exists", path.display()),
            ),
        });
    }
    Ok(path)
}

/// Stops a process for good: SIGTERM to its init now, SIGKILL after the grace period.
fn terminate(slot: &mut Slot) {
    slot.stop_requested = true;
    slot.restart_at = None;
    match &slot.live {
        Some(live) => {
            supervise::send_signal(&live.launched.child, libc::SIGTERM);
            slot.kill_at = Some(Instant::now() + GRACE);
        }
        None => slot.phase = Phase::Stopped,
    }
}

fn echo_line(name: &str, width: usize, line: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{name:<width$} | ");
    let _ = out.write_all(line);
    let _ = out.flush();
}

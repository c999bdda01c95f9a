//! Process: one virtual process from spec to exit status. `run` prepares the launch plan,
//! creates the state directory and cgroup, clones the child into its namespaces, lets it go once
//! the parent-side set-up is done, supervises it and tears everything down.

pub mod child;
pub mod clone;
pub mod exec;
pub mod handshake;
pub mod init;
pub mod join;
pub mod launch;
pub mod outcome;
pub mod pty;
pub mod rlimits;
pub mod stage;
pub mod stdio;
pub mod supervise;
pub mod terminal;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Uid;
use thiserror::Error;

use crate::cgroups::{self, Accounting, Cgroup, CgroupError};
use crate::config::{ProcessSpec, SpecError};
use crate::fs::{self, PlanError, PlanOptions};
use crate::kernel::state::{StateDir, StateError};
use crate::security::privileges::Privileges;
use crate::security::seccomp::SeccompError;
use crate::security::user::{self, UserError};
use crate::security::{idmap, SecurityLevel};
use launch::{CStringArray, ExecPlan, LaunchPlan, Workdir};
pub use outcome::Outcome;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Rlimit(#[from] rlimits::RlimitError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{step}: {}", stage::errno_text(*.errno))]
    Sys { step: &'static str, errno: Errno },
    #[error(transparent)]
    Net(#[from] crate::net::setup::NetError),
    #[error("network link: {0}")]
    Veth(#[from] crate::net::veth::VethError),
    #[error("writing the user namespace id maps: {0}")]
    IdMap(std::io::Error),
    #[error("--workdir {0} must be an absolute path")]
    Workdir(String),
    #[error("'{0}' contains a NUL byte")]
    Nul(String),
    #[error("{0} IPC objects for one process: at most {max} can be passed", max = launch::MAX_PASSED_FDS)]
    TooManyFds(usize),
}

fn sys(step: &'static str) -> impl Fn(Errno) -> ProcessError {
    move |errno| ProcessError::Sys { step, errno }
}

fn cstring(text: &str) -> Result<CString, ProcessError> {
    CString::new(text).map_err(|_| ProcessError::Nul(text.escape_debug().to_string()))
}

/// Whether hydra runs without root: the process then gets a user namespace first.
pub fn rootless() -> bool {
    !Uid::effective().is_root()
}

/// The command's environment: hydra's defaults, the spec's variables over them, and the
/// supervisor's (`extra`, the IPC variables) over both.
fn environment(
    spec: &ProcessSpec,
    home: &str,
    terminal: bool,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_string(), launch::DEFAULT_PATH.to_string()),
        ("HOSTNAME".to_string(), spec.hostname.clone()),
        ("HOME".to_string(), home.to_string()),
        ("container".to_string(), "hydra".to_string()),
    ];
    if terminal {
        env.push(("TERM".to_string(), "xterm".to_string()));
    }
    for (key, value) in spec.env.iter().chain(extra) {
        env.retain(|(k, _)| k != key);
        env.push((key.clone(), value.clone()));
    }
    env
}

fn exec_plan(spec: &ProcessSpec, env: &[(String, String)]) -> Result<ExecPlan, ProcessError> {
    let command = spec.command.first().ok_or(SpecError::NoCommand)?;
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(launch::DEFAULT_PATH, |(_, v)| v.as_str());
    let candidates = launch::exec_candidates(command, path)
        .iter()
        .map(|c| cstring(c))
        .collect::<Result<_, _>>()?;
    let argv = spec
        .command
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<_, _>>()?;
    let envp = env
        .iter()
        .map(|(k, v)| cstring(&format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    Ok(ExecPlan {
        candidates,
        argv: CStringArray::new(argv),
        envp: CStringArray::new(envp),
    })
}

fn workdir(spec: &ProcessSpec) -> Result<Workdir, ProcessError> {
    let path = spec.workdir.as_deref().unwrap_or("/");
    if !path.starts_with('/') {
        return Err(ProcessError::Workdir(path.to_string()));
    }
    Ok(Workdir {
        create: launch::dir_prefixes(path)
            .iter()
            .map(|p| cstring(p))
            .collect::<Result<_, _>>()?,
        path: cstring(path)?,
    })
}

/// Where writes stay allowed under Landlock: the writable tmpfs, /dev, read-write volumes.
pub fn writable_paths(spec: &ProcessSpec) -> Vec<String> {
    let mut paths = vec!["/tmp".to_string(), "/dev".to_string()];
    paths.extend(
        spec.volumes
            .iter()
            .filter(|v| !v.read_only)
            .map(|v| v.target.clone()),
    );
    paths
}

/// Everything prepared before clone, plus the warnings to print.
pub struct Prepared {
    pub plan: LaunchPlan,
    pub warnings: Vec<String>,
}

/// What a supervisor adds to a process beyond its spec.
#[derive(Debug, Default)]
pub struct Extras {
    /// Becomes the child's fds 0–2 (the supervisor's pipes).
    pub stdio: Option<[RawFd; 3]>,
    /// nice value.
    pub nice: Option<i32>,
    /// The process's cgroups, mounted read-only at /sys/fs/cgroup.
    pub cgroup_view: Option<crate::fs::plan::CgroupView>,
    /// Its links (claimed container-wide before).
    pub links: crate::net::veth::LinkPlan,
    /// The supervisor's fds of its IPC objects, placed at fds 3, 4, … (`launch::passed_fd`).
    pub pass_fds: Vec<RawFd>,
    /// Variables set over the spec's (those announcing the passed fds).
    pub env: Vec<(String, String)>,
    /// hydra's own binary, bound read-only at /usr/local/bin/hydra.
    pub hydra_binary: Option<std::path::PathBuf>,
}

/// Prepares everything the child needs. `layer_mountpoint` is where its private tmpfs goes (the
/// container's state directory).
pub fn prepare(
    spec: &ProcessSpec,
    layer_mountpoint: &std::path::Path,
    terminal: bool,
    extras: Extras,
) -> Result<Prepared, ProcessError> {
    let rootless = rootless();
    if extras.pass_fds.len() > launch::MAX_PASSED_FDS {
        return Err(ProcessError::TooManyFds(extras.pass_fds.len()));
    }
    let rootfs = fs::plan::check_rootfs(&spec.rootfs)?;
    let id_mapping = rootless.then(idmap::for_current_user);
    let highest_id = id_mapping.map(idmap::Mapping::highest_id);
    let identity = user::resolve(&rootfs, spec.user.as_ref(), highest_id)?;
    let level = spec.security;
    let writable = writable_paths(spec)
        .iter()
        .map(|p| cstring(p))
        .collect::<Result<_, _>>()?;
    let mut warnings = Vec::new();
    if level == SecurityLevel::Minimal {
        warnings.push("security level minimal: no seccomp filter (for debugging only)".to_string());
    } else if spec.net == crate::net::NetMode::None {
        warnings.push(
            "network mode none: the process shares the host's network (every interface and port)"
                .to_string(),
        );
    }
    let mounts = fs::plan::build(
        &rootfs,
        layer_mountpoint,
        &PlanOptions {
            read_only_root: spec.read_only || level.read_only_root(),
            rootless,
            tmp_tmpfs: level.read_only_root(),
            volumes: spec.volumes.clone(),
            cgroup_view: extras.cgroup_view,
            hydra_binary: extras.hydra_binary,
        },
    )?;
    let env = environment(spec, &identity.home, terminal, &extras.env);
    // setgroups is denied only under a single-id map (newgidmap leaves it allowed).
    let set_groups = !matches!(id_mapping, Some(idmap::Mapping::Single));
    let (privileges, more) = Privileges::new(level, identity, set_groups, writable)?;
    warnings.extend(more);
    let can_raise = !rootless
        && caps::has_cap(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_RESOURCE,
        )
        .unwrap_or(false);
    let plan = LaunchPlan {
        hostname: cstring(&spec.hostname)?,
        loopback: spec.net.own_namespace(),
        mounts,
        workdir: workdir(spec)?,
        rlimits: rlimits::plan(&spec.limits, can_raise)?,
        privileges,
        init: spec.init,
        terminal,
        stdio: extras.stdio,
        nice: extras.nice,
        argv_area: launch::own_argv_area(),
        links: extras.links,
        id_mapping,
        pass_fds: extras.pass_fds,
        exec: exec_plan(spec, &env)?,
    };
    Ok(Prepared { plan, warnings })
}

/// Creates the cgroup, or explains (rootless) why limits cannot be enforced.
fn make_cgroup(
    spec: &ProcessSpec,
    warnings: &mut Vec<String>,
) -> Result<Option<Cgroup>, ProcessError> {
    // A process without cgroup limits stays in hydra's own cgroup (as with bwrap or nsjail).
    if !spec.limits.needs_cgroup() {
        return Ok(None);
    }
    let rootless = rootless();
    let res = cgroups::limits::resources(&spec.limits);
    let rel = cgroups::relative_path(&spec.container, &spec.name);
    match Cgroup::create(cgroups::mode::detect(), &rel, &res, Accounting::LimitsOnly) {
        Ok(cg) => Ok(Some(cg)),
        Err(e) if rootless && e.is_permission() => {
            let mut flags = Vec::new();
            if spec.limits.memory.is_some() {
                flags.push("--memory");
            }
            if spec.limits.cpu_millis.is_some() {
                flags.push("--cpus");
            }
            if spec.limits.pids.is_some() {
                flags.push("--pids");
            }
            warnings.push(format!(
                "rootless without a delegated cgroup: {} not enforced",
                flags.join(", ")
            ));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn clone_flags(spec: &ProcessSpec) -> u64 {
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if spec.net.own_namespace() {
        flags |= libc::CLONE_NEWNET;
    }
    if rootless() {
        flags |= libc::CLONE_NEWUSER;
    }
    flags as u64
}

/// Called between clone and go, once hydra's own set-up of the child is done.
pub type BeforeGo<'a> = &'a mut dyn FnMut(&clone::Child) -> Result<(), ProcessError>;

/// The parent's part between clone and go: the id maps of a rootless child, the network link
/// of a `partial` one, and whatever the caller still waits for.
fn release_child(
    child: &clone::Child,
    plan: &LaunchPlan,
    parent_end: &OwnedFd,
    before_go: BeforeGo<'_>,
) -> Result<(), ProcessError> {
    if let Some(mapping) = plan.id_mapping {
        idmap::write(child.pid, mapping).map_err(ProcessError::IdMap)?;
    }
    if !plan.links.is_empty() {
        crate::net::veth::attach(child.pid, &plan.links)?;
    }
    before_go(child)?;
    handshake::send_go(parent_end).map_err(sys("starting the process"))
}

/// Runs one virtual process to completion. Warnings go to `warn` as they arise.
pub fn run(spec: &ProcessSpec, warn: &mut dyn FnMut(&str)) -> Result<Outcome, ProcessError> {
    let terminal = pty::stdin_is_terminal();
    // The cgroup is recorded before it exists (write-ahead), so gc finds it after a crash.
    let cgroup_rel = cgroups::relative_path(&spec.container, &spec.name);
    let state = StateDir::create(&spec.container, &[("cgroup", &cgroup_rel)])?;
    // Blocked before anything starts a thread (the rootless forwarder) or a clone: threads and
    // the child inherit the mask (the child resets it before exec), and every signal reaches
    // hydra's signalfd rather than killing it from another thread.
    let signals = supervise::signal_fd().map_err(sys("blocking signals"))?;
    let network = claim_network(spec, &state)?;
    let mut warnings = Vec::new();
    let mut cgroup = make_cgroup(spec, &mut warnings)?;
    let extras = Extras {
        cgroup_view: cgroup.as_ref().map(Cgroup::view),
        links: crate::net::veth::LinkPlan {
            eth0: network.as_ref().and_then(|n| n.link),
            internal: Vec::new(),
        },
        ..Extras::default()
    };
    let prepared = prepare(spec, &state.layer_mountpoint(false)?, terminal, extras);
    let Prepared {
        plan,
        warnings: more,
    } = match prepared {
        Ok(p) => p,
        Err(e) => {
            if let Some(cg) = cgroup.as_mut() {
                let _ = cg.destroy();
            }
            return Err(e);
        }
    };
    for w in warnings.iter().chain(&more) {
        warn(w);
    }
    let mut network = network;
    // The socket redirect is linked once the process runs: its work must not slow the start.
    let mut redirect = network.as_mut().and_then(LoneNetwork::take_redirect);
    let mut before_go = |child: &clone::Child| match network.as_mut() {
        Some(n) => n.ready(child),
        None => Ok(()),
    };
    let mut on_exec = || {
        if let Some(r) = redirect.as_mut() {
            r.open();
        }
    };
    let result = launch_and_wait(
        spec,
        &plan,
        cgroup.as_ref(),
        terminal,
        &signals,
        &mut before_go,
        &mut on_exec,
    );
    // Gone before the network is released.
    drop(redirect);
    let events = cgroup.as_ref().map(Cgroup::events).unwrap_or_default();
    if let Some(cg) = cgroup.as_mut() {
        cg.destroy()?;
    }
    network.map(LoneNetwork::release).transpose()?;
    let ended = result?;
    drop(state);
    Ok(outcome::decide(&plan, &ended, events, &spec.limits))
}

/// A lone process's network: claimed (and its rules installed) before the clone, its stale UDP
/// flows forgotten before the process may go, released on drop if `release` was not reached.
/// hydra's own forwarder serves the mappings rootless, and their IPv6 side as root (reaching
/// the process from before go, stopped before the release).
struct LoneNetwork<'s> {
    state: &'s StateDir,
    link: Option<crate::net::pool::Subnet>,
    claiming: Option<crate::net::setup::Claiming>,
    userspace: Option<crate::net::userspace::Ports>,
    released: bool,
}

impl LoneNetwork<'_> {
    /// Forgets stale UDP flows of the mappings, or starts the rootless forwarder into `child`'s
    /// namespaces (the process must not run before its mappings work).
    fn ready(&mut self, child: &clone::Child) -> Result<(), ProcessError> {
        if let Some(ports) = &self.userspace {
            ports
                .attach(0, child.pidfd.as_fd())
                .map_err(crate::net::setup::NetError::from)?;
        }
        match self.claiming.take() {
            Some(claiming) => claiming.finish().map(drop).map_err(ProcessError::from),
            None => Ok(()),
        }
    }

    /// The socket redirect of the mappings, for the caller to open once the process runs and to
    /// drop before `release` (left here, it goes unopened with the claim).
    fn take_redirect(&mut self) -> Option<crate::net::redirect::SocketRedirect> {
        self.claiming.as_mut()?.take_redirect()
    }

    fn release(mut self) -> Result<(), ProcessError> {
        self.released = true;
        self.userspace = None;
        Ok(crate::net::setup::release(self.state.path())?)
    }
}

impl Drop for LoneNetwork<'_> {
    fn drop(&mut self) {
        if !self.released {
            self.userspace = None;
            let _ = crate::net::setup::release(self.state.path());
        }
    }
}

/// Claims the link and port mappings of a `partial` lone process and installs its rules.
fn claim_network<'s>(
    spec: &ProcessSpec,
    state: &'s StateDir,
) -> Result<Option<LoneNetwork<'s>>, ProcessError> {
    use crate::net::{firewall::Forward, setup};
    if spec.net != crate::net::NetMode::Partial {
        return Ok(None);
    }
    let request = setup::Request {
        networks: Vec::new(),
        endpoints: vec![(spec.name.clone(), spec.egress)],
        forwards: spec
            .ports
            .iter()
            .map(|p| Forward {
                protocol: p.protocol,
                host_ip: p.host_ip,
                host_port: p.host_port,
                port: p.port,
                process: spec.name.clone(),
                targets: vec![0],
            })
            .collect(),
    };
    if rootless() {
        return match setup::claim_userspace(state.path(), &spec.container, &request, 1) {
            Ok(ports) => Ok(Some(LoneNetwork {
                state,
                link: None,
                claiming: None,
                userspace: Some(ports),
                released: false,
            })),
            Err(e) => {
                let _ = setup::release(state.path());
                Err(e.into())
            }
        };
    }
    match setup::start_claim(state.path(), &spec.container, &request) {
        Ok(mut claiming) => Ok(Some(LoneNetwork {
            state,
            link: Some(claiming.network().endpoints[0].subnet),
            userspace: claiming.take_ports(),
            claiming: Some(claiming),
            released: false,
        })),
        Err(e) => {
            // Whatever was written before the failure is released.
            let _ = setup::release(state.path());
            Err(e.into())
        }
    }
}

/// A cloned virtual process and the parent's end of its set-up channel (EOF once it exec'd).
#[derive(Debug)]
pub struct Launched {
    pub child: clone::Child,
    pub channel: OwnedFd,
}

/// Clones the process into its namespaces (and cgroup) and lets it go once the parent-side
/// set-up (id maps) is done. The caller watches `channel` and `child.pidfd`.
pub fn spawn(
    spec: &ProcessSpec,
    plan: &LaunchPlan,
    cgroup: Option<&Cgroup>,
    before_go: BeforeGo<'_>,
) -> Result<Launched, ProcessError> {
    let (parent_end, child_end) = handshake::pair().map_err(sys("creating the set-up channel"))?;
    let child_end = above_passed_fds(child_end, plan.pass_fds.len())?;
    let (cgroup_fd, join_fds) = match cgroup {
        Some(cg) => (cg.clone_fd()?, cg.join_fds()?),
        None => (None, Vec::new()),
    };
    let join: Vec<RawFd> = join_fds.iter().map(AsRawFd::as_raw_fd).collect();
    let sock = child_end.as_raw_fd();
    // SAFETY: the child branch only runs child::main, which allocates nothing and never returns.
    let side =
        unsafe { clone::clone3(clone_flags(spec), cgroup_fd.as_ref().map(|f| f.as_raw_fd())) }
            .map_err(sys("creating the process (clone3)"))?;
    let child = match side {
        clone::Side::Child => child::main(plan, sock, &join),
        clone::Side::Parent(child) => child,
    };
    drop(child_end);
    drop((cgroup_fd, join_fds));
    if let Err(e) = release_child(&child, plan, &parent_end, before_go) {
        supervise::kill_and_reap(&child);
        return Err(e);
    }
    Ok(Launched {
        child,
        channel: parent_end,
    })
}

/// The child's end of the set-up channel moved above the numbers its `passed` IPC fds take
/// (3, 4, …), so the child can place them without moving the channel. Chosen here, in the
/// parent, because the child may not allocate, and moving the channel there would change the
/// fd every later step reports on.
fn above_passed_fds(child_end: OwnedFd, passed: usize) -> Result<OwnedFd, ProcessError> {
    let first_free = launch::passed_fd(passed);
    if passed == 0 || child_end.as_raw_fd() >= first_free {
        return Ok(child_end);
    }
    nix::fcntl::fcntl(
        &child_end,
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(first_free),
    )
    .map(|fd| {
        // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
        unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
    })
    .map_err(sys("moving the set-up channel"))
}

fn launch_and_wait(
    spec: &ProcessSpec,
    plan: &LaunchPlan,
    cgroup: Option<&Cgroup>,
    terminal: bool,
    signals: &nix::sys::signalfd::SignalFd,
    before_go: BeforeGo<'_>,
    on_exec: &mut dyn FnMut(),
) -> Result<supervise::Ended, ProcessError> {
    let mut pty = if terminal {
        Some(pty::Pty::open().map_err(sys("opening a pseudo-terminal"))?)
    } else {
        None
    };
    let launched = spawn(spec, plan, cgroup, before_go)?;
    supervise::supervise(
        &launched.child,
        &launched.channel,
        signals,
        pty.as_mut(),
        on_exec,
    )
    .map_err(sys("waiting for the process"))
}

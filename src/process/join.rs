//! `hydra exec`: a new command inside a running virtual process. It joins the process's cgroup
//! and namespaces (through a pidfd, atomically), forks into its pid namespace, takes the same
//! limits, identity and privileges as the process's command, and execs. Like the set-up child it
//! is non-dumpable until exec, so nothing inside can attach to it half-way (runc CVE-2016-9962).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use clap::ValueEnum;
use nix::errno::Errno;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use thiserror::Error;

use super::exec::{exec_failure_code, reset_signals};
use super::launch::{exec_candidates, CStringArray, DEFAULT_PATH};
use super::rlimits;
use super::stage::errno_text;
use super::supervise;
use crate::config::Limits;
use crate::kernel::control::ExecInfo;
use crate::security::privileges::Privileges;
use crate::security::user::Identity;
use crate::security::SecurityLevel;

#[derive(Debug, Error)]
pub enum JoinError {
    #[error("unknown security level '{0}'")]
    Level(String),
    #[error("{0} contains a NUL byte")]
    Nul(String),
    #[error(transparent)]
    Rlimit(#[from] rlimits::RlimitError),
    #[error(transparent)]
    Seccomp(#[from] crate::security::seccomp::SeccompError),
    #[error("{step}: {}", errno_text(*.errno))]
    Sys { step: &'static str, errno: Errno },
    #[error("joining cgroup {path}: {source}")]
    Cgroup {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

fn sys(step: &'static str) -> impl Fn(Errno) -> JoinError {
    move |errno| JoinError::Sys { step, errno }
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, JoinError> {
    items
        .iter()
        .map(|s| CString::new(s.as_str()).map_err(|_| JoinError::Nul(s.clone())))
        .collect()
}

fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a new fd we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Moves the calling (single-threaded) process into the cgroup directories: "0" to `tasks` on
/// v1 (a thread moving itself skips the global lock), to `cgroup.procs` on v2.
fn join_cgroups(dirs: &[std::path::PathBuf]) -> Result<(), JoinError> {
    for dir in dirs {
        let file = if dir.join("tasks").exists() {
            "tasks"
        } else {
            "cgroup.procs"
        };
        std::fs::write(dir.join(file), "0").map_err(|source| JoinError::Cgroup {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The pid whose namespaces to join. hydra's init is non-dumpable and its memory belongs to the
/// host's user namespace, so an unprivileged caller may not join through it; rootless, the
/// command it runs (same namespaces, dumpable after its exec) is the way in.
fn join_pid(info: &ExecInfo) -> i32 {
    if !info.rootless {
        return info.pid;
    }
    let children = format!("/proc/{0}/task/{0}/children", info.pid);
    std::fs::read_to_string(children)
        .ok()
        .and_then(|c| c.split_whitespace().next()?.parse().ok())
        .unwrap_or(info.pid)
}

/// Runs `command` inside the process `info` describes; returns its exit code.
pub fn exec(info: &ExecInfo, command: &[String]) -> Result<i32, JoinError> {
    let level = SecurityLevel::from_str(&info.level, true)
        .map_err(|_| JoinError::Level(info.level.clone()))?;
    let identity = Identity {
        uid: info.uid,
        gid: info.gid,
        groups: info.groups.clone(),
        home: info.home.clone(),
    };
    // Rootless, the exec keeps its supplementary groups (setgroups may be denied there).
    let (privileges, _) =
        Privileges::new(level, identity, !info.rootless, cstrings(&info.writable)?)?;
    let limits = Limits {
        max_files: info.max_files,
        max_file_size: info.max_file_size,
        ..Limits::default()
    };
    let limits = rlimits::plan(&limits, false)?;
    let path = info
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let program = command.first().cloned().unwrap_or_default();
    let candidates = cstrings(&exec_candidates(&program, path))?;
    let argv = CStringArray::new(cstrings(command)?);
    let envp = CStringArray::new(cstrings(&info.env)?);
    let workdir =
        CString::new(info.workdir.as_str()).map_err(|_| JoinError::Nul(info.workdir.clone()))?;
    let signals = supervise::signal_fd().map_err(sys("blocking signals"))?;

    let target = pidfd_open(join_pid(info)).map_err(sys("finding the process"))?;
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    join_cgroups(&info.cgroups)?;
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWCGROUP;
    if info.rootless {
        flags |= libc::CLONE_NEWUSER;
    }
    // SAFETY: setns with a pidfd we own joins all the namespaces at once.
    if unsafe { libc::setns(target.as_raw_fd(), flags) } < 0 {
        return Err(JoinError::Sys {
            step: "joining the process's namespaces",
            errno: Errno::last(),
        });
    }
    // SAFETY: fork semantics; the child only runs `enter` and then execs or exits.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
    if pid < 0 {
        return Err(JoinError::Sys {
            step: "forking into the process",
            errno: Errno::last(),
        });
    }
    if pid == 0 {
        enter(
            &workdir,
            &limits,
            &privileges,
            &candidates,
            &argv,
            &envp,
            &program,
        );
    }
    wait(pid as i32, &signals)
}

/// The forked child: now in the process's pid namespace; drops to the process's privileges and
/// execs. Never returns.
fn enter(
    workdir: &CString,
    limits: &[rlimits::Rlimit],
    privileges: &Privileges,
    candidates: &[CString],
    argv: &CStringArray,
    envp: &CStringArray,
    program: &str,
) -> ! {
    // An exec (a healthcheck probe, say) dies with the hydra that started it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let fail = |what: String| -> ! {
        eprintln!("hydra: exec: {what}");
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(125) }
    };
    // SAFETY: chdir to a NUL-terminated path.
    if unsafe { libc::chdir(workdir.as_ptr()) } < 0 {
        fail(format!(
            "changing to {}: {}",
            workdir.to_string_lossy(),
            errno_text(Errno::last())
        ));
    }
    if let Err((_, e)) = rlimits::apply(limits) {
        fail(format!("setting limits: {}", errno_text(e)));
    }
    // SAFETY: marks every fd but stdio close-on-exec.
    unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    };
    if let Err(e) = privileges.apply() {
        fail(format!("dropping privileges: {}", errno_text(e.errno)));
    }
    if let Err(e) = reset_signals() {
        fail(format!("resetting signals: {}", errno_text(e)));
    }
    let mut reported = Errno::ENOENT;
    for path in candidates {
        // SAFETY: NUL-terminated path, argv and envp arrays.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let errno = Errno::last();
        if errno != Errno::ENOENT && errno != Errno::ENOTDIR {
            reported = errno;
        }
    }
    eprintln!("hydra: exec {program}: {}", errno_text(reported));
    // SAFETY: leaving the forked child.
    unsafe { libc::_exit(exec_failure_code(reported)) }
}

/// Waits for the exec'd command, forwarding the usual signals to it.
fn wait(pid: i32, signals: &nix::sys::signalfd::SignalFd) -> Result<i32, JoinError> {
    let child = pidfd_open(pid).map_err(sys("watching the command"))?;
    loop {
        let mut fds = [
            nix::poll::PollFd::new(child.as_fd(), nix::poll::PollFlags::POLLIN),
            nix::poll::PollFd::new(signals.as_fd(), nix::poll::PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(JoinError::Sys {
                    step: "waiting for the command",
                    errno: e,
                })
            }
        }
        while let Ok(Some(info)) = signals.read_signal() {
            if info.ssi_signo != libc::SIGWINCH as u32 {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid, info.ssi_signo as i32) };
            }
        }
        match waitid(
            Id::PIDFd(child.as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(JoinError::Sys {
                    step: "waiting for the command",
                    errno: e,
                })
            }
        }
    }
}

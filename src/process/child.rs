//! The child between clone and exec: waits for the parent, then enters its namespaces'
//! configuration, filesystem, limits and privileges in that order, and execs (or runs the
//! init). Nothing here allocates or locks: it walks the prepared `LaunchPlan`. Each failure is
//! reported to the parent as (stage, index, errno).

use std::os::fd::RawFd;

use nix::errno::Errno;

use super::exec;
use super::handshake;
use super::init;
use super::launch::{passed_fd, LaunchPlan, MAX_PASSED_FDS};
use super::rlimits;
use super::stage::{Stage, StepError};
use super::terminal;
use crate::fs::apply::enter_root;
use crate::fs::syscalls as sys;

fn errno_check(ret: libc::c_int, stage: Stage) -> Result<(), StepError> {
    if ret < 0 {
        Err(StepError::new(stage, Errno::last()))
    } else {
        Ok(())
    }
}

/// The child's entry point; never returns.
/// `sock` is the child's end of the set-up channel; `cgroup_tasks` the v1 `tasks` files to join.
pub fn main(plan: &LaunchPlan, sock: RawFd, cgroup_tasks: &[RawFd]) -> ! {
    match setup(plan, sock, cgroup_tasks) {
        Ok(()) if plan.init => init::run(plan, sock),
        Ok(()) => exec::exec(plan, sock),
        Err(error) => exec::fail(sock, error, 125),
    }
}

fn setup(plan: &LaunchPlan, sock: RawFd, cgroup_tasks: &[RawFd]) -> Result<(), StepError> {
    // SAFETY: prctl with integer arguments: die with hydra.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    handshake::wait_go(sock).map_err(|e| StepError::new(Stage::WaitSupervisor, e))?;
    if let Some(fds) = plan.stdio {
        for (target, fd) in fds.iter().enumerate() {
            // SAFETY: dup2 of fds the supervisor opened for us onto stdio.
            errno_check(unsafe { libc::dup2(*fd, target as RawFd) }, Stage::Stdio)?;
        }
    }
    // Non-dumpable from here to exec (no ptrace, no /proc/PID/mem; runc CVE-2016-9962). Not
    // before the go: a rootless parent must still open this process's /proc/PID/uid_map.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // SAFETY: setsid takes no arguments.
    errno_check(unsafe { libc::setsid() }, Stage::Setsid)?;
    join_cgroup(cgroup_tasks)?;
    // After joining our cgroup, so the namespace's root is that cgroup.
    // SAFETY: unshare with a flag constant.
    errno_check(
        unsafe { libc::unshare(libc::CLONE_NEWCGROUP) },
        Stage::CgroupNamespace,
    )?;
    let host = plan.hostname.as_bytes();
    // SAFETY: the hostname buffer outlives the call.
    errno_check(
        unsafe { libc::sethostname(host.as_ptr().cast(), host.len()) },
        Stage::Hostname,
    )?;
    if plan.loopback {
        crate::net::loopback::bring_up().map_err(|e| StepError::new(Stage::Loopback, e))?;
    }
    enter_root(&plan.mounts)?;
    if plan.terminal {
        attach_terminal(sock, !plan.init)?;
    }
    pass_fds(&plan.pass_fds, sock)?;
    close_other_fds(plan.pass_fds.len(), sock)?;
    enter_workdir(plan)?;
    rlimits::apply(&plan.rlimits).map_err(|(i, e)| StepError::at(Stage::Rlimit, i, e))?;
    if let Some(nice) = plan.nice {
        // SAFETY: setpriority with integer arguments.
        errno_check(
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) },
            Stage::Priority,
        )?;
    }
    plan.privileges.apply()
}

/// Moves this (single-threaded) process into its v1 cgroups by writing "0" to each `tasks`.
fn join_cgroup(tasks: &[RawFd]) -> Result<(), StepError> {
    for (i, &fd) in tasks.iter().enumerate() {
        // SAFETY: writing a one-byte constant to an fd the parent opened for us.
        let ret = unsafe { libc::write(fd, c"0".as_ptr().cast(), 1) };
        sys::close(fd);
        if ret != 1 {
            return Err(StepError::at(Stage::CgroupJoin, i, Errno::last()));
        }
    }
    Ok(())
}

/// Opens the process's pty (stdio becomes its slave); `controlling` (no init): take it as
/// controlling terminal here, since this process is the command.
fn attach_terminal(sock: RawFd, controlling: bool) -> Result<(), StepError> {
    terminal::open_inside(sock).map_err(|e| StepError::new(Stage::Terminal, e))?;
    if controlling {
        exec::take_terminal().map_err(|e| StepError::new(Stage::Terminal, e))?;
    }
    Ok(())
}

/// Places the IPC fds (the supervisor's, inherited through clone) at `passed_fd(0)`,
/// `passed_fd(1)`, … without close-on-exec. Every source is first copied above all the targets,
/// so that no dup2 onto a target can close a source still to be placed (a source may carry a
/// target's number); the copies are close-on-exec and go with the other fds right after. The
/// parent put `sock` above the targets (`spawn`), so no target is the channel either.
fn pass_fds(sources: &[RawFd], sock: RawFd) -> Result<(), StepError> {
    let n = sources.len();
    if n == 0 {
        return Ok(());
    }
    if n > MAX_PASSED_FDS {
        return Err(StepError::new(Stage::PassFds, Errno::EMFILE));
    }
    let above = passed_fd(n);
    if sock < above {
        return Err(StepError::new(Stage::PassFds, Errno::EBADF));
    }
    // On the stack: nothing between clone and exec allocates.
    let mut moved: [RawFd; MAX_PASSED_FDS] = [-1; MAX_PASSED_FDS];
    for (i, (&source, slot)) in sources.iter().zip(moved.iter_mut()).enumerate() {
        // SAFETY: fcntl with integer arguments on an fd inherited from the supervisor.
        let fd = unsafe { libc::fcntl(source, libc::F_DUPFD_CLOEXEC, above) };
        if fd < 0 {
            return Err(StepError::at(Stage::PassFds, i, Errno::last()));
        }
        *slot = fd;
    }
    for (i, &fd) in moved.iter().take(n).enumerate() {
        // SAFETY: dup2 of our own copy onto its target (which loses close-on-exec).
        if unsafe { libc::dup2(fd, passed_fd(i)) } < 0 {
            return Err(StepError::at(Stage::PassFds, i, Errno::last()));
        }
    }
    Ok(())
}

/// Closes every fd but stdio, the `passed` IPC fds placed after them and the channel, before
/// the workdir is entered, so no inherited host fd can be reached through /proc/self/fd (runc
/// CVE-2024-21626).
fn close_other_fds(passed: usize, sock: RawFd) -> Result<(), StepError> {
    let first = passed_fd(passed) as libc::c_uint;
    let sock = sock as libc::c_uint;
    // SAFETY: close_range with integer arguments.
    let below = if sock > first {
        unsafe { libc::close_range(first, sock - 1, 0) }
    } else {
        0
    };
    errno_check(below, Stage::CloseFds)?;
    // SAFETY: as above.
    errno_check(
        unsafe { libc::close_range(sock + 1, libc::c_uint::MAX, 0) },
        Stage::CloseFds,
    )
}

fn enter_workdir(plan: &LaunchPlan) -> Result<(), StepError> {
    for dir in &plan.workdir.create {
        // Failures (a read-only root) surface at chdir below with a clearer errno.
        let _ = sys::mkdirat(libc::AT_FDCWD, dir, 0o755);
    }
    // SAFETY: the path is NUL-terminated.
    errno_check(
        unsafe { libc::chdir(plan.workdir.path.as_ptr()) },
        Stage::Workdir,
    )?;
    // The working directory must be inside the new root: getcwd fails for one that is not.
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length.
    let cwd = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if cwd.is_null() && Errno::last() != Errno::ERANGE {
        return Err(StepError::new(Stage::Workdir, Errno::last()));
    }
    Ok(())
}

//! hydra's pid-1 init (the cloned child itself): forks the command, forwards the usual
//! termination signals to it, reaps every orphan, and exits with the command's status. It
//! waits with sigwaitinfo on blocked signals, since a pid-namespace init ignores signals it
//! has no handler for.

use std::os::fd::RawFd;

use nix::errno::Errno;

use super::exec;
use super::launch::LaunchPlan;
use super::stage::{Stage, StepError};

/// Signals forwarded to the command (the parent hydra forwards the same set to pid 1).
pub const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn wait_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigaddset(&mut set, libc::SIGCHLD);
    }
    set
}

/// The exit code a wait status stands for: the code, or 128 + the signal.
pub fn status_code(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// Blanks the argv this process inherited from hydra and writes `hydra-init` there.
fn rename(area: Option<(usize, usize)>) {
    const NAME: &[u8] = b"hydra-init";
    let Some((start, end)) = area else { return };
    // SAFETY: [start, end) is this process's own argv area (from /proc/self/stat before clone;
    // the child has a private copy of it), writable stack memory.
    unsafe {
        std::ptr::write_bytes(start as *mut u8, 0, end - start);
        std::ptr::copy_nonoverlapping(
            NAME.as_ptr(),
            start as *mut u8,
            NAME.len().min(end - start - 1),
        );
    }
}

/// Runs as pid 1 until the command exits; never returns.
pub fn run(plan: &LaunchPlan, sock: RawFd) -> ! {
    let set = wait_set();
    // SAFETY: set is a valid sigset_t on the stack.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } < 0 {
        exec::fail(sock, StepError::new(Stage::SignalMask, Errno::last()), 125);
    }
    // SAFETY: fork semantics (no CLONE_VM); the child only execs or _exits.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
    if pid < 0 {
        exec::fail(sock, StepError::new(Stage::Fork, Errno::last()), 125);
    }
    if pid == 0 {
        command(plan, sock);
    }
    rename(plan.argv_area);
    // Only the command keeps the channel: its exec closes it, which tells the parent.
    // SAFETY: closing our copy of the channel.
    unsafe { libc::close(sock) };
    supervise(pid as libc::pid_t, &set)
}

/// The command's side of the fork: own session (and terminal), then exec.
fn command(plan: &LaunchPlan, sock: RawFd) -> ! {
    // SAFETY: setsid takes no arguments.
    if unsafe { libc::setsid() } < 0 {
        exec::fail(sock, StepError::new(Stage::Setsid, Errno::last()), 125);
    }
    if plan.terminal {
        if let Err(errno) = exec::take_terminal() {
            exec::fail(sock, StepError::new(Stage::Terminal, errno), 125);
        }
    }
    exec::exec(plan, sock)
}

fn supervise(command: libc::pid_t, set: &libc::sigset_t) -> ! {
    loop {
        // SAFETY: siginfo_t is plain data filled in by the kernel.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: set and info are valid pointers.
        let sig = unsafe { libc::sigwaitinfo(set, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(command, sig) };
            continue;
        }
        if let Some(code) = reap(command) {
            // SAFETY: leaving pid 1; the kernel then ends the rest of the namespace.
            unsafe { libc::_exit(code) };
        }
    }
}

/// Reaps every exited child; returns the command's exit code once it is among them.
fn reap(command: libc::pid_t) -> Option<i32> {
    let mut result = None;
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return result;
        }
        if pid == command {
            result = Some(status_code(status));
        }
    }
}

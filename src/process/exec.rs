//! The last step of every virtual process: restore the signal state the command expects and
//! execve it, trying the PATH candidates in order as execvp does. Runs in the child.

use std::os::fd::RawFd;

use nix::errno::Errno;

use super::handshake;
use super::launch::LaunchPlan;
use super::stage::{Stage, StepError};

/// Exit code for a failed exec: 127 when nothing was found, 126 when found but not runnable.
pub fn exec_failure_code(errno: Errno) -> i32 {
    match errno {
        Errno::ENOENT | Errno::ENOTDIR => 127,
        _ => 126,
    }
}

/// Unblocks every signal and resets every disposition to the default: the command starts with a
/// clean signal state whatever hydra inherited (a shell's background job ignores SIGINT and
/// SIGQUIT; the Rust runtime ignores SIGPIPE).
pub fn reset_signals() -> Result<(), Errno> {
    for sig in 1..=libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: SIG_DFL is valid for every catchable signal; errors (reserved signals) are
            // harmless.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    // SAFETY: sigset_t is plain data, filled by sigemptyset.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to stack data; SIG_DFL is a valid disposition.
    unsafe {
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) < 0 {
            return Err(Errno::last());
        }
    }
    Ok(())
}

/// Makes fd 0 (a pty) the controlling terminal of the calling session leader.
pub fn take_terminal() -> Result<(), Errno> {
    // SAFETY: ioctl on fd 0 with an integer argument.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Execs the command; only returns by exiting. A failure is reported on `sock` first.
pub fn exec(plan: &LaunchPlan, sock: RawFd) -> ! {
    if let Err(errno) = reset_signals() {
        fail(sock, StepError::new(Stage::SignalMask, errno), 125);
    }
    let mut reported = Errno::ENOENT;
    for path in &plan.exec.candidates {
        // SAFETY: path, argv and envp are NUL-terminated and prepared before clone.
        unsafe {
            libc::execve(
                path.as_ptr(),
                plan.exec.argv.as_ptr(),
                plan.exec.envp.as_ptr(),
            )
        };
        let errno = Errno::last();
        // Like execvp: a candidate that exists but cannot run is what the user needs to hear.
        if errno != Errno::ENOENT && errno != Errno::ENOTDIR {
            reported = errno;
        }
    }
    fail(
        sock,
        StepError::new(Stage::Exec, reported),
        exec_failure_code(reported),
    )
}

/// Reports `error` and exits with `code`.
pub fn fail(sock: RawFd, error: StepError, code: i32) -> ! {
    handshake::report(sock, &error);
    // SAFETY: leaving the child without running any destructor or atexit handler.
    unsafe { libc::_exit(code) }
}

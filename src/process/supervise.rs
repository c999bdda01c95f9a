//! The parent while the virtual process runs: forwards signals, relays the terminal, collects
//! set-up failures from the channel and waits for the exit, all in one poll loop on one thread.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};

use super::clone::Child;
use super::handshake::{self, Received};
use super::init::FORWARDED;
use super::pty::Pty;
use super::stage::StepError;

/// The signals hydra handles itself (blocked, read from a signalfd).
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        if let Ok(s) = Signal::try_from(sig) {
            set.add(s);
        }
    }
    set.add(Signal::SIGWINCH);
    set
}

/// Blocks the handled signals (the child inherits the mask and resets it before exec) and
/// returns a signalfd for them.
pub fn signal_fd() -> Result<SignalFd, Errno> {
    let set = handled_signals();
    set.thread_block()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// How the process ended and the first failure its set-up reported.
#[derive(Debug)]
pub struct Ended {
    /// 0–255: the exit code, or 128 + the signal that killed it.
    pub code: i32,
    pub signal: Option<i32>,
    pub failure: Option<StepError>,
}

/// Sends `sig` to the child through its pidfd (no pid reuse race).
pub fn send_signal(child: &Child, sig: i32) {
    // SAFETY: pidfd_send_signal on the child's pidfd with no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            child.pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// Kills the child and reaps it (after a failure in the parent before the go).
pub fn kill_and_reap(child: &Child) {
    send_signal(child, libc::SIGKILL);
    let _ = waitid(Id::PIDFd(child.pidfd.as_fd()), WaitPidFlag::WEXITED);
}

/// What one relay step did.
#[derive(PartialEq)]
enum Relay {
    Copied,
    Idle,
    Finished,
}

/// Copies what is readable on `from` to `to`.
fn relay(from: BorrowedFd, to: BorrowedFd) -> Relay {
    let mut buf = [0u8; 8192];
    match nix::unistd::read(from, &mut buf) {
        Ok(0) => Relay::Finished,
        Ok(n) => {
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                match nix::unistd::write(to, rest) {
                    Ok(w) => rest = &rest[w..],
                    Err(Errno::EINTR | Errno::EAGAIN) => continue,
                    Err(_) => return Relay::Finished,
                }
            }
            Relay::Copied
        }
        Err(Errno::EINTR | Errno::EAGAIN) => Relay::Idle,
        Err(_) => Relay::Finished,
    }
}

/// Runs until the child exits.
pub fn supervise(
    child: &Child,
    channel: &OwnedFd,
    signals: &SignalFd,
    mut pty: Option<&mut Pty>,
    on_exec: &mut dyn FnMut(),
) -> Result<Ended, Errno> {
    let mut failure = None;
    let mut channel_open = true;
    let mut stdin_open = false;
    let mut master_open = false;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    loop {
        let mut fds = vec![
            PollFd::new(child.pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        let channel_at = channel_open.then(|| {
            fds.push(PollFd::new(channel.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let master = pty.as_ref().and_then(|p| p.master.as_ref());
        let master_at = match master {
            Some(m) if master_open => {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let stdin_at = stdin_open.then(|| {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
        let ready = |i: Option<usize>| {
            i.and_then(|i| fds[i].revents())
                .is_some_and(|r| !r.is_empty())
        };
        let exited = ready(Some(0));
        let signalled = ready(Some(1));
        let (chan_ready, master_ready, stdin_ready) =
            (ready(channel_at), ready(master_at), ready(stdin_at));
        drop(fds);
        if signalled {
            while let Ok(Some(info)) = signals.read_signal() {
                let sig = info.ssi_signo as i32;
                match (sig, pty.as_deref()) {
                    (libc::SIGWINCH, Some(p)) => p.resize(),
                    (libc::SIGWINCH, None) => {}
                    _ => send_signal(child, sig),
                }
            }
        }
        if chan_ready {
            match handshake::receive(channel) {
                Received::Failure(e) => failure = failure.or(Some(e)),
                Received::Closed => {
                    // Closed on exec (or by a child that failed first): the process runs.
                    channel_open = false;
                    on_exec();
                }
                Received::Terminal(fd) => {
                    if let Some(p) = pty.as_deref_mut() {
                        p.attach(fd);
                        (master_open, stdin_open) = (true, true);
                    }
                }
                Received::Nothing => {}
            }
        }
        if let Some(m) = pty.as_ref().and_then(|p| p.master.as_ref()) {
            if master_ready {
                master_open = relay(m.as_fd(), stdout.as_fd()) != Relay::Finished;
            }
            if stdin_ready && relay(stdin.as_fd(), m.as_fd()) == Relay::Finished {
                stdin_open = false;
            }
        }
        if exited {
            return finish(child, channel, channel_open, failure, pty.as_deref());
        }
    }
}

fn finish(
    child: &Child,
    channel: &OwnedFd,
    mut channel_open: bool,
    mut failure: Option<StepError>,
    pty: Option<&Pty>,
) -> Result<Ended, Errno> {
    // A failure sent just before exiting is still queued on the channel.
    while channel_open {
        match handshake::receive(channel) {
            Received::Failure(e) => failure = failure.or(Some(e)),
            Received::Terminal(_) => {}
            Received::Closed | Received::Nothing => channel_open = false,
        }
    }
    if let Some(m) = pty.and_then(|p| p.master.as_ref()) {
        let _ = nix::fcntl::fcntl(
            m,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        while relay(m.as_fd(), std::io::stdout().as_fd()) == Relay::Copied {}
    }
    let status = loop {
        match waitid(Id::PIDFd(child.pidfd.as_fd()), WaitPidFlag::WEXITED) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    let (code, signal) = match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
        _ => (125, None),
    };
    Ok(Ended {
        code,
        signal,
        failure,
    })
}

//! The outer side of a process's terminal: hydra's own terminal in raw mode, and the pty master
//! the child opened in its devpts (see `terminal`), between which hydra copies bytes.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::pty::Winsize;
use nix::sys::termios::{self, SetArg, Termios};

/// The parent's side of the terminal.
pub struct Pty {
    /// Arrives from the child once it opened the pty.
    pub master: Option<OwnedFd>,
    saved: Option<Termios>,
}

fn window_size(fd: i32) -> Option<Winsize> {
    // SAFETY: Winsize is plain data filled by the ioctl.
    let mut ws: Winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes into ws.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

impl Pty {
    /// Puts the terminal on stdin in raw mode (restored on drop); the master comes later.
    pub fn open() -> Result<Self, Errno> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(original) = &saved {
            let mut raw = original.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        }
        Ok(Pty {
            master: None,
            saved,
        })
    }

    /// Copies the outer terminal's size to the pty (on SIGWINCH).
    pub fn resize(&self) {
        if let (Some(ws), Some(master)) = (window_size(0), &self.master) {
            // SAFETY: TIOCSWINSZ reads ws.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
    }

    /// Takes the master the child sent, sized like the outer terminal.
    pub fn attach(&mut self, master: OwnedFd) {
        self.master = Some(master);
        self.resize();
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Some(original) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, original);
        }
    }
}

/// Whether stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    // SAFETY: isatty on fd 0.
    unsafe { libc::isatty(0) == 1 }
}

//! A pseudo-terminal for a process whose stdin is a terminal: the slave becomes the process's
//! stdio, the parent copies bytes between its own terminal (in raw mode) and the master.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::pty::{openpty, Winsize};
use nix::sys::termios::{self, SetArg, Termios};

/// The parent's side of the terminal.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    saved: Option<Termios>,
}

fn window_size(fd: i32) -> Option<Winsize> {
    // SAFETY: Winsize is plain data filled by the ioctl.
    let mut ws: Winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes into ws.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

impl Pty {
    /// Opens a pty sized like the terminal on stdin and puts that terminal in raw mode (restored
    /// on drop).
    pub fn open() -> Result<Self, Errno> {
        let ws = window_size(0);
        let pair = openpty(ws.as_ref(), None)?;
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(original) = &saved {
            let mut raw = original.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        }
        Ok(Pty {
            master: pair.master,
            slave: pair.slave,
            saved,
        })
    }

    /// Copies the outer terminal's size to the pty (on SIGWINCH).
    pub fn resize(&self) {
        if let Some(ws) = window_size(0) {
            // SAFETY: TIOCSWINSZ reads ws.
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
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

//! The steps of a virtual process's set-up, as the child reports a failure back to hydra: a
//! stage, an index into the stage's list (which mount, which rlimit) and an errno. The parent
//! turns them into one line such as "mounting proc on /proc: permission denied".

use nix::errno::Errno;

/// A set-up step that can fail in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Stage {
    WaitSupervisor = 1,
    Stdio,
    Setsid,
    CgroupJoin,
    CgroupNamespace,
    Hostname,
    Loopback,
    MakePrivate,
    LayerTmpfs,
    LayerDirs,
    Overlay,
    OpenRoot,
    DevNull,
    /// Index: the mount plan step.
    Mount,
    PivotRoot,
    DetachOldRoot,
    ReadOnlyRoot,
    CloseFds,
    Workdir,
    /// Index: the rlimit.
    Rlimit,
    Priority,
    Groups,
    SetGid,
    SetUid,
    Capabilities,
    NoNewPrivs,
    Landlock,
    Seccomp,
    Terminal,
    SignalMask,
    Fork,
    Exec,
    /// Placing the IPC fds at their numbers.
    PassFds,
}

const ALL: [Stage; 33] = [
    Stage::WaitSupervisor,
    Stage::Stdio,
    Stage::Setsid,
    Stage::CgroupJoin,
    Stage::CgroupNamespace,
    Stage::Hostname,
    Stage::Loopback,
    Stage::MakePrivate,
    Stage::LayerTmpfs,
    Stage::LayerDirs,
    Stage::Overlay,
    Stage::OpenRoot,
    Stage::DevNull,
    Stage::Mount,
    Stage::PivotRoot,
    Stage::DetachOldRoot,
    Stage::ReadOnlyRoot,
    Stage::CloseFds,
    Stage::Workdir,
    Stage::Rlimit,
    Stage::Priority,
    Stage::Groups,
    Stage::SetGid,
    Stage::SetUid,
    Stage::Capabilities,
    Stage::NoNewPrivs,
    Stage::Landlock,
    Stage::Seccomp,
    Stage::Terminal,
    Stage::SignalMask,
    Stage::Fork,
    Stage::Exec,
    Stage::PassFds,
];

impl Stage {
    pub fn from_u16(value: u16) -> Option<Stage> {
        ALL.iter().copied().find(|s| *s as u16 == value)
    }
}

/// A failed step: what the child sends back. Plain data, so the child builds it without
/// allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepError {
    pub stage: Stage,
    pub index: u16,
    pub errno: Errno,
}

impl StepError {
    pub const WIRE_LEN: usize = 8;

    pub fn new(stage: Stage, errno: Errno) -> Self {
        StepError {
            stage,
            index: 0,
            errno,
        }
    }

    pub fn at(stage: Stage, index: usize, errno: Errno) -> Self {
        StepError {
            stage,
            index: index.min(u16::MAX as usize) as u16,
            errno,
        }
    }

    pub fn encode(&self) -> [u8; Self::WIRE_LEN] {
        let mut buf = [0u8; Self::WIRE_LEN];
        buf[0..2].copy_from_slice(&(self.stage as u16).to_le_bytes());
        buf[2..4].copy_from_slice(&self.index.to_le_bytes());
        buf[4..8].copy_from_slice(&(self.errno as i32).to_le_bytes());
        buf
    }

    pub fn decode(buf: &[u8]) -> Option<Self> {
        if buf.len() != Self::WIRE_LEN {
            return None;
        }
        let stage = Stage::from_u16(u16::from_le_bytes([buf[0], buf[1]]))?;
        let index = u16::from_le_bytes([buf[2], buf[3]]);
        let errno = Errno::from_raw(i32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]));
        Some(StepError {
            stage,
            index,
            errno,
        })
    }
}

/// Lower-case strerror text, as in "no such file or directory".
pub fn errno_text(errno: Errno) -> String {
    let text = errno.desc();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("errno {}", errno as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip() {
        for stage in ALL {
            let e = StepError::at(stage, 7, Errno::EPERM);
            assert_eq!(StepError::decode(&e.encode()), Some(e));
        }
        assert_eq!(StepError::decode(&[0u8; 8]), None);
        assert_eq!(StepError::decode(&[1u8; 3]), None);
    }

    #[test]
    fn errno_text_is_lower_case() {
        assert_eq!(errno_text(Errno::ENOENT), "no such file or directory");
        assert_eq!(errno_text(Errno::EPERM), "operation not permitted");
    }
}

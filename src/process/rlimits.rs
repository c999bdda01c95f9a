//! Resource limits set with setrlimit(2) in the child: RLIMIT_NOFILE (`--max-files`) and
//! RLIMIT_FSIZE (`--max-file-size`). hydra cannot raise a hard limit without
//! CAP_SYS_RESOURCE, so a request above the inherited hard limit is refused up front.

use nix::errno::Errno;
use thiserror::Error;

use crate::config::Limits;

#[derive(Debug, Error, PartialEq)]
pub enum RlimitError {
    #[error("{flag} {value} is above the hard limit {hard} hydra inherited (raising it needs CAP_SYS_RESOURCE)")]
    AboveHard {
        flag: &'static str,
        value: u64,
        hard: u64,
    },
}

/// One limit to set (soft = hard = value).
#[derive(Debug, Clone, Copy)]
pub struct Rlimit {
    pub resource: libc::__rlimit_resource_t,
    pub value: u64,
    /// The flag that asked for it, for messages.
    pub flag: &'static str,
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: current is a valid out-pointer.
    if unsafe { libc::getrlimit(resource, &mut current) } < 0 {
        return u64::MAX;
    }
    current.rlim_max
}

/// Plans the limits; `can_raise` is whether hydra holds CAP_SYS_RESOURCE in the initial user
/// namespace.
pub fn plan(limits: &Limits, can_raise: bool) -> Result<Vec<Rlimit>, RlimitError> {
    let wanted = [
        (libc::RLIMIT_NOFILE, limits.max_files, "--max-files"),
        (libc::RLIMIT_FSIZE, limits.max_file_size, "--max-file-size"),
    ];
    let mut planned = Vec::new();
    for (resource, value, flag) in wanted {
        let Some(value) = value else { continue };
        let hard = hard_limit(resource);
        if value > hard && !can_raise {
            return Err(RlimitError::AboveHard { flag, value, hard });
        }
        planned.push(Rlimit {
            resource,
            value,
            flag,
        });
    }
    Ok(planned)
}

/// Applies the limits in order; on failure returns the index of the one that failed.
pub fn apply(limits: &[Rlimit]) -> Result<(), (usize, Errno)> {
    for (i, limit) in limits.iter().enumerate() {
        let value = libc::rlimit {
            rlim_cur: limit.value,
            rlim_max: limit.value,
        };
        // SAFETY: value is a valid rlimit on the stack.
        if unsafe { libc::setrlimit(limit.resource, &value) } < 0 {
            return Err((i, Errno::last()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_raise_above_the_hard_limit() {
        let hard = hard_limit(libc::RLIMIT_NOFILE);
        assert_ne!(
            hard,
            u64::MAX,
            "RLIMIT_NOFILE always has a finite hard limit"
        );
        let limits = Limits {
            max_files: Some(hard + 1),
            ..Default::default()
        };
        assert!(matches!(
            plan(&limits, false),
            Err(RlimitError::AboveHard {
                flag: "--max-files",
                ..
            })
        ));
        let ok = Limits {
            max_files: Some(16),
            max_file_size: Some(1 << 20),
            ..Default::default()
        };
        assert_eq!(plan(&ok, false).unwrap().len(), 2);
    }
}

//! Seccomp profiles. `standard` is an allow-list close to Docker's default profile; `strict`
//! removes process inspection and a few more. The filter is compiled (`bpf`, a balanced tree)
//! before clone; the child only hands the prepared program to the kernel.

use std::collections::BTreeMap;

use nix::errno::Errno;
use thiserror::Error;

use super::bpf::{self, Action, Insn, Policy, Rule};
use super::SecurityLevel;

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("seccomp profiles are only written for x86_64 so far")]
    Arch,
}

/// A compiled filter.
pub type Program = Vec<Insn>;

macro_rules! calls {
    ($($name:ident),* $(,)?) => { &[$(libc::$name),*] };
}

/// Allowed without conditions at `standard` and `strict` (Docker's default list, x86_64).
const BASE: &[libc::c_long] = calls![
    SYS_accept,
    SYS_accept4,
    SYS_access,
    SYS_adjtimex,
    SYS_alarm,
    SYS_arch_prctl,
    SYS_bind,
    SYS_brk,
    SYS_capget,
    SYS_capset,
    SYS_chdir,
    SYS_chmod,
    SYS_chown,
    SYS_clock_adjtime,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_close,
    SYS_close_range,
    SYS_connect,
    SYS_copy_file_range,
    SYS_creat,
    SYS_dup,
    SYS_dup2,
    SYS_dup3,
    SYS_epoll_create,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_epoll_wait,
    SYS_eventfd,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fanotify_mark,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_flistxattr,
    SYS_flock,
    SYS_fork,
    SYS_fremovexattr,
    SYS_fsetxattr,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_futex_waitv,
    SYS_futimesat,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpgrp,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrlimit,
    SYS_get_robust_list,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_inotify_add_watch,
    SYS_inotify_init,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_io_cancel,
    SYS_ioctl,
    SYS_io_destroy,
    SYS_io_getevents,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_io_setup,
    SYS_io_submit,
    SYS_kill,
    SYS_landlock_add_rule,
    SYS_landlock_create_ruleset,
    SYS_landlock_restrict_self,
    SYS_lchown,
    SYS_lgetxattr,
    SYS_link,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lremovexattr,
    SYS_lseek,
    SYS_lsetxattr,
    SYS_lstat,
    SYS_madvise,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_mincore,
    SYS_mkdir,
    SYS_mkdirat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_modify_ldt,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_open,
    SYS_openat,
    SYS_openat2,
    SYS_pause,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_pipe,
    SYS_pipe2,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_poll,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_process_mrelease,
    SYS_pselect6,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_read,
    SYS_readahead,
    SYS_readlink,
    SYS_readlinkat,
    SYS_readv,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_remap_file_pages,
    SYS_removexattr,
    SYS_rename,
    SYS_renameat,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rmdir,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_sched_setscheduler,
    SYS_sched_yield,
    SYS_seccomp,
    SYS_select,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_setfsgid,
    SYS_setfsuid,
    SYS_setgid,
    SYS_setgroups,
    SYS_setitimer,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setrlimit,
    SYS_set_robust_list,
    SYS_setsid,
    SYS_setsockopt,
    SYS_set_tid_address,
    SYS_setuid,
    SYS_setxattr,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd,
    SYS_signalfd4,
    SYS_socket,
    SYS_socketpair,
    SYS_splice,
    SYS_stat,
    SYS_statfs,
    SYS_statx,
    SYS_symlink,
    SYS_symlinkat,
    SYS_sync,
    SYS_sync_file_range,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_tee,
    SYS_tgkill,
    SYS_time,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_uname,
    SYS_unlink,
    SYS_unlinkat,
    SYS_utime,
    SYS_utimensat,
    SYS_utimes,
    SYS_vfork,
    SYS_vmsplice,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
];

/// io_pgetevents(2) on x86_64; the libc crate lacks the constant.
const SYS_IO_PGETEVENTS: libc::c_long = 333;

/// Allowed at `standard` only: process inspection and what the capability set already guards.
const STANDARD_ONLY: &[libc::c_long] = calls![
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_kcmp,
    SYS_pidfd_getfd,
    SYS_chroot,
    SYS_mknod,
    SYS_mknodat,
];

/// Namespace flags clone(2) may not carry: no new namespaces from inside. All sit in the low
/// 32 bits of the flags argument.
const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32
    | 0x80; // CLONE_NEWTIME

/// personality(2) values Docker allows (PER_LINUX, PER_LINUX32, UNAME26 variants, query).
const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const EPERM: Action = Action::Errno(libc::EPERM as u16);

fn arch() -> Result<u32, SeccompError> {
    if cfg!(target_arch = "x86_64") {
        Ok(bpf::ARCH_X86_64)
    } else {
        Err(SeccompError::Arch)
    }
}

fn nr(call: libc::c_long) -> u32 {
    call as u32
}

/// The level's policy: listed calls allowed, clone without namespace flags, clone3 answered
/// with ENOSYS (its flags sit behind a pointer the filter cannot read, so libc falls back to
/// clone), everything else EPERM.
pub fn policy(level: SecurityLevel) -> Result<Policy, SeccompError> {
    let mut rules = BTreeMap::new();
    let mut allow = |calls: &[libc::c_long]| {
        for &call in calls {
            rules.insert(nr(call), Rule::Always(Action::Allow));
        }
    };
    allow(BASE);
    allow(&[SYS_IO_PGETEVENTS]);
    if level == SecurityLevel::Standard {
        allow(STANDARD_ONLY);
        rules.insert(
            nr(libc::SYS_personality),
            Rule::OneOf {
                arg: 0,
                values: PERSONALITIES.to_vec(),
                then: Action::Allow,
                otherwise: EPERM,
            },
        );
    }
    rules.insert(
        nr(libc::SYS_clone),
        Rule::NoBits {
            arg: 0,
            mask: NAMESPACE_FLAGS,
            then: Action::Allow,
            otherwise: EPERM,
        },
    );
    rules.insert(
        nr(libc::SYS_clone3),
        Rule::Always(Action::Errno(libc::ENOSYS as u16)),
    );
    Ok(Policy {
        arch: arch()?,
        default: EPERM,
        rules,
    })
}

/// The filters for a level, in the order the child installs them (none at `minimal`).
pub fn filters(level: SecurityLevel) -> Result<Vec<Program>, SeccompError> {
    if !level.seccomp() {
        return Ok(Vec::new());
    }
    Ok(vec![bpf::compile(&policy(level)?)])
}

/// Installs one filter on the calling thread. Needs no_new_privs (or CAP_SYS_ADMIN).
pub fn install(program: &Program) -> Result<(), Errno> {
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at the prepared program, which lives across the call; `Insn` has the
    // layout of struct sock_filter.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
            0,
            0,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `probe` in a forked child under the level's filters; returns its exit code.
    fn under_filters(level: SecurityLevel, probe: fn() -> i32) -> i32 {
        let programs = filters(level).unwrap();
        // SAFETY: the test child only makes raw syscalls and _exits.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                for p in &programs {
                    if install(p).is_err() {
                        // SAFETY: leaving the forked child.
                        unsafe { libc::_exit(100) };
                    }
                }
                // SAFETY: leaving the forked child.
                unsafe { libc::_exit(probe()) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                libc::WEXITSTATUS(status)
            }
        }
    }

    fn errno_of(ret: libc::c_long) -> i32 {
        if ret < 0 {
            Errno::last() as i32
        } else {
            0
        }
    }

    #[test]
    fn standard_denies_namespaces_and_mount_but_allows_the_usual() {
        let unshare = || errno_of(unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into());
        assert_eq!(under_filters(SecurityLevel::Standard, unshare), libc::EPERM);
        let mount = || {
            errno_of(
                unsafe {
                    libc::mount(
                        c"x".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        0,
                        std::ptr::null(),
                    )
                }
                .into(),
            )
        };
        assert_eq!(under_filters(SecurityLevel::Standard, mount), libc::EPERM);
        let clone3 = || errno_of(unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) });
        assert_eq!(under_filters(SecurityLevel::Standard, clone3), libc::ENOSYS);
        let getpid = || errno_of(unsafe { libc::getpid() }.into());
        assert_eq!(under_filters(SecurityLevel::Strict, getpid), 0);
        let clone_ns = || {
            errno_of(unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    libc::CLONE_NEWUSER | libc::SIGCHLD,
                    0,
                    0,
                    0,
                    0,
                )
            })
        };
        assert_eq!(
            under_filters(SecurityLevel::Standard, clone_ns),
            libc::EPERM
        );
    }

    #[test]
    fn strict_denies_ptrace() {
        let ptrace = || errno_of(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) });
        assert_eq!(under_filters(SecurityLevel::Strict, ptrace), libc::EPERM);
        assert_eq!(under_filters(SecurityLevel::Standard, ptrace), 0);
    }

    #[test]
    fn the_tree_answers_like_the_lists() {
        use crate::security::bpf::interpreter::run;
        let code = bpf::compile(&policy(SecurityLevel::Standard).unwrap());
        let at = |call: libc::c_long, arg0: u64| {
            run(&code, nr(call), bpf::ARCH_X86_64, [arg0, 0, 0, 0, 0, 0])
        };
        const ALLOW: u32 = 0x7fff_0000;
        const DENY: u32 = 0x0005_0000 | libc::EPERM as u32;
        for &call in BASE.iter().chain(STANDARD_ONLY) {
            assert_eq!(at(call, 0), ALLOW, "syscall {call}");
        }
        for call in [
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_keyctl,
        ] {
            assert_eq!(at(call, 0), DENY, "syscall {call}");
        }
        assert_eq!(at(libc::SYS_clone, libc::SIGCHLD as u64), ALLOW);
        assert_eq!(at(libc::SYS_clone, libc::CLONE_NEWNET as u64), DENY);
        assert_eq!(at(libc::SYS_personality, 0xffff_ffff), ALLOW);
        assert_eq!(at(libc::SYS_personality, 0x41), DENY);
        assert_eq!(at(libc::SYS_clone3, 0), 0x0005_0000 | libc::ENOSYS as u32);
        // Far shorter than a linear chain of ~300 comparisons.
        assert!(code.len() < 400, "{} instructions", code.len());
    }

    #[test]
    fn minimal_has_no_filter() {
        assert!(filters(SecurityLevel::Minimal).unwrap().is_empty());
    }
}

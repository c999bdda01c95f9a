//! The launch plan: everything the child needs, prepared before clone. C strings, pointer
//! arrays, masks, the mount list and the compiled seccomp filters all live here so the child
//! between clone and exec only reads.

use std::ffi::CString;
use std::os::fd::RawFd;

use crate::fs::MountPlan;
use crate::process::rlimits::Rlimit;
use crate::security::privileges::Privileges;

/// argv or envp: owned C strings plus the NULL-terminated pointer array execve takes.
#[derive(Debug)]
pub struct CStringArray {
    strings: Vec<CString>,
    pointers: Vec<*const libc::c_char>,
}

impl CStringArray {
    pub fn new(strings: Vec<CString>) -> Self {
        let mut pointers: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        CStringArray { strings, pointers }
    }

    pub fn as_ptr(&self) -> *const *const libc::c_char {
        self.pointers.as_ptr()
    }

    pub fn strings(&self) -> &[CString] {
        &self.strings
    }
}

/// How to exec the command.
#[derive(Debug)]
pub struct ExecPlan {
    /// Paths to try in order (PATH search done up front, as execvp would).
    pub candidates: Vec<CString>,
    pub argv: CStringArray,
    pub envp: CStringArray,
}

/// Where the process starts: directories to create if missing, then the chdir target.
#[derive(Debug)]
pub struct Workdir {
    pub create: Vec<CString>,
    pub path: CString,
}

/// Everything the child does, in the order it does it.
#[derive(Debug)]
pub struct LaunchPlan {
    pub hostname: CString,
    /// Bring `lo` up (own network namespace).
    pub loopback: bool,
    pub mounts: MountPlan,
    pub workdir: Workdir,
    pub rlimits: Vec<Rlimit>,
    pub privileges: Privileges,
    /// Run hydra's pid-1 init in front of the command.
    pub init: bool,
    /// stdio is a pty: the command takes it as its controlling terminal.
    pub terminal: bool,
    /// fds to make the process's 0, 1, 2 (the supervisor's pipes); `None`: inherit hydra's.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// nice value, set while the process may still raise its priority.
    pub nice: Option<i32>,
    /// Where hydra's own argv lives ([start, end) from /proc/self/stat): the init, a fork of
    /// hydra, blanks it so `ps` inside shows no host path or hydra arguments.
    pub argv_area: Option<(usize, usize)>,
    /// The links the parent creates before letting the child go (`partial`, `networks:`).
    pub links: crate::net::veth::LinkPlan,
    /// The user-namespace id maps the parent writes (rootless only).
    pub id_mapping: Option<crate::security::idmap::Mapping>,
    /// The supervisor's fds of the process's IPC objects, in order: the child places the i-th
    /// at `passed_fd(i)` (no close-on-exec), the only fds besides stdio it keeps.
    pub pass_fds: Vec<RawFd>,
    pub exec: ExecPlan,
}

/// The number of the first passed fd; the others follow it.
pub const FIRST_PASSED_FD: RawFd = 3;
/// At most this many fds are passed to one process (the child keeps them in a stack array).
pub const MAX_PASSED_FDS: usize = 1024;

/// The fd number the `index`-th passed fd has in the process.
pub fn passed_fd(index: usize) -> RawFd {
    FIRST_PASSED_FD.saturating_add(RawFd::try_from(index).unwrap_or(RawFd::MAX))
}

/// The container PATH when the user sets none (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The paths execvp would try for `command` under `path`.
pub fn exec_candidates(command: &str, path: &str) -> Vec<String> {
    if command.contains('/') {
        return vec![command.to_string()];
    }
    path.split(':')
        .map(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            format!("{}/{command}", dir.trim_end_matches('/'))
        })
        .collect()
}

/// [arg_start, arg_end) of the calling process, from /proc/self/stat (fields 48 and 49). Read
/// once per hydra process: a supervisor prepares many children.
pub fn own_argv_area() -> Option<(usize, usize)> {
    static AREA: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    *AREA.get_or_init(read_argv_area)
}

fn read_argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.parse().ok()?;
    (start != 0 && end > start && end - start < (1 << 20)).then_some((start, end))
}

/// `/a/b/c` → [`/a`, `/a/b`, `/a/b/c`], for mkdir -p in the child.
pub fn dir_prefixes(path: &str) -> Vec<String> {
    let mut prefixes = Vec::new();
    let mut current = String::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        current.push('/');
        current.push_str(part);
        prefixes.push(current.clone());
    }
    prefixes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_path() {
        assert_eq!(exec_candidates("/bin/sh", DEFAULT_PATH), vec!["/bin/sh"]);
        assert_eq!(exec_candidates("./x", "/bin"), vec!["./x"]);
        assert_eq!(
            exec_candidates("ls", "/usr/bin:/bin/:"),
            vec!["/usr/bin/ls", "/bin/ls", "./ls"]
        );
    }

    #[test]
    fn the_argv_area_holds_our_arguments() {
        let (start, end) = own_argv_area().expect("argv area");
        // SAFETY: reading our own argv strings, which live for the whole process.
        let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) };
        let first = std::env::args().next().unwrap_or_default();
        assert!(bytes.starts_with(first.as_bytes()));
    }

    #[test]
    fn prefixes() {
        assert_eq!(dir_prefixes("/a/b/c"), vec!["/a", "/a/b", "/a/b/c"]);
        assert!(dir_prefixes("/").is_empty());
    }

    #[test]
    fn arrays_are_null_terminated() {
        let arr = CStringArray::new(vec![CString::new("a").unwrap()]);
        // SAFETY: the array has two entries, the second the terminator.
        assert!(unsafe { *arr.as_ptr().add(1) }.is_null());
    }
}

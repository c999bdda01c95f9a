//! Shared helpers for the integration tests that drive the real `hydra` binary.
//!
//! Every test builds one invocation with [`Hydra`], which gives it a unique container name
//! (`t-<label>-<pid>-<n>`), runs it with a timeout (a hang fails instead of blocking CI), captures
//! stdout/stderr/exit code and afterwards asserts that the host holds nothing for that name
//! ([`assert_host_clean`]). Tests that need root call [`require_root`] and fail loudly otherwise.
#![allow(dead_code)] // each test crate uses a different subset of these helpers

pub mod rootless;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for one `hydra` invocation.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How long stdout/stderr may stay open after `hydra` exited (only a leaked process keeps them).
const PIPE_GRACE: Duration = Duration::from_secs(5);

/// Docker's 14 default capabilities (the `standard` level): CHOWN 0, DAC_OVERRIDE 1, FOWNER 3,
/// FSETID 4, KILL 5, SETGID 6, SETUID 7, SETPCAP 8, NET_BIND_SERVICE 10, NET_RAW 13,
/// SYS_CHROOT 18, MKNOD 27, AUDIT_WRITE 29, SETFCAP 31.
pub const DOCKER_DEFAULT_CAPS: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 10)
    | (1 << 13)
    | (1 << 18)
    | (1 << 27)
    | (1 << 29)
    | (1 << 31);
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_MODULE: u32 = 16;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;

pub fn hydra_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hydra"))
}

pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

pub fn is_root() -> bool {
    euid() == 0
}

/// Fail (never skip) when the test is not run as root.
pub fn require_root() {
    assert!(
        is_root(),
        "this test needs root (euid is {}): run the integration tests as root, as CI does; \
         a privileged test never passes silently",
        euid()
    );
}

/// The busybox root filesystem the tests run in: `$HYDRA_ROOTFS`, else `rootfs/busybox`.
pub fn rootfs() -> PathBuf {
    let p = std::env::var_os("HYDRA_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/busybox"));
    assert!(
        p.join("bin/busybox").is_file() && p.join("usr/local/bin/hydra-probe").is_file(),
        "root filesystem {} is missing or incomplete (needs bin/busybox and \
         usr/local/bin/hydra-probe): run `make rootfs` first",
        p.display()
    );
    p
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique, valid container name: `t-<label>-<pid>-<n>` (short enough to be a hostname).
pub fn unique_name(label: &str) -> String {
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(20)
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    // Zero-padded so that no name is a prefix of another (leftover checks match substrings).
    format!("t-{label}-{}-{n:04}", std::process::id())
}

/// A directory under /tmp removed (recursively) when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = PathBuf::from(format!(
            "/tmp/hydra-test-{label}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// What stdin of the hydra process is.
enum StdinMode {
    Null,
    /// Write these bytes, then close.
    Bytes(Vec<u8>),
    /// A pipe the test keeps (only with [`Hydra::spawn`]).
    Pipe,
}

/// Builder for one `hydra` invocation.
pub struct Hydra {
    program: PathBuf,
    args: Vec<OsString>,
    name: Option<String>,
    stdin: StdinMode,
    timeout: Duration,
    user: Option<(u32, u32)>,
    clear_env: Option<Vec<(String, String)>>,
    envs: Vec<(String, String)>,
    inherit_fds: Vec<(OwnedFd, RawFd)>,
    state_root: PathBuf,
    check_clean: bool,
}

impl Hydra {
    /// `hydra` with no arguments yet (for `info`, bad input, ...). No name, no clean check.
    pub fn bare() -> Hydra {
        Hydra {
            program: hydra_bin(),
            args: Vec::new(),
            name: None,
            stdin: StdinMode::Null,
            timeout: TIMEOUT,
            user: None,
            clear_env: None,
            envs: Vec::new(),
            inherit_fds: Vec::new(),
            state_root: PathBuf::from("/run/hydra"),
            check_clean: false,
        }
    }

    /// `hydra run --rootfs <test rootfs> --name t-<label>-<pid>-<n>`; add flags, then `cmd`/`sh`.
    /// After it exits the host is checked to hold nothing for that name.
    pub fn run(label: &str) -> Hydra {
        Hydra::run_in(label, &rootfs())
    }

    /// Like [`Hydra::run`] with another root filesystem.
    /// With `HYDRA_TEST_IMAGE=FILE.hcon` and `HYDRA_TEST_IMAGE_KEY=KEY` (`make test` sets them
    /// for a second pass of the isolation suites), the test rootfs is run from that encrypted
    /// image of it instead: `--image FILE --key KEY`.
    pub fn run_in(label: &str, rootfs: &Path) -> Hydra {
        let name = unique_name(label);
        let mut h = Hydra::bare();
        let root: Vec<OsString> = match (
            std::env::var_os("HYDRA_TEST_IMAGE"),
            std::env::var_os("HYDRA_TEST_IMAGE_KEY"),
        ) {
            (Some(image), Some(key)) if rootfs == self::rootfs() => {
                vec!["--image".into(), image, "--key".into(), key]
            }
            _ => vec!["--rootfs".into(), rootfs.into()],
        };
        h.args = vec!["run".into()];
        h.args.extend(root);
        h.args.extend(["--name".into(), name.clone().into()]);
        h.name = Some(name);
        h.check_clean = true;
        h
    }

    /// No host-clean check after this run (a test that kills hydra on purpose checks itself).
    pub fn without_clean_check(mut self) -> Hydra {
        self.check_clean = false;
        self
    }

    /// `hydra run --rootfs <test rootfs>` without `--name` (hydra picks `run-XXXXXX`).
    pub fn run_unnamed() -> Hydra {
        let mut h = Hydra::bare();
        h.args = vec!["run".into(), "--rootfs".into(), rootfs().into()];
        h
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().expect("this invocation has no --name")
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Hydra {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Hydra
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `-- CMD ARG...`
    pub fn cmd<I, S>(self, argv: I) -> Hydra
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.arg("--").args(argv)
    }

    /// `-- sh -c SCRIPT`
    pub fn sh(self, script: &str) -> Hydra {
        self.cmd(["sh", "-c", script])
    }

    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Hydra {
        self.stdin = StdinMode::Bytes(bytes.into());
        self
    }

    /// Keep a pipe to hydra's stdin (use with [`Hydra::spawn`] and [`Running::write_stdin`]).
    pub fn stdin_pipe(mut self) -> Hydra {
        self.stdin = StdinMode::Pipe;
        self
    }

    pub fn timeout(mut self, t: Duration) -> Hydra {
        self.timeout = t;
        self
    }

    /// Run hydra as this uid/gid (supplementary groups cleared).
    pub fn user(mut self, uid: u32, gid: u32) -> Hydra {
        self.user = Some((uid, gid));
        self
    }

    /// Start from an empty environment holding only these variables.
    pub fn clean_env(mut self, vars: &[(&str, &str)]) -> Hydra {
        self.clear_env = Some(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Hydra {
        self.envs.push((k.to_string(), v.to_string()));
        self
    }

    /// Let hydra inherit `fd` (its own descriptor, close-on-exec in the test) as descriptor
    /// `target`, without close-on-exec.
    pub fn inherit_fd(mut self, fd: OwnedFd, target: RawFd) -> Hydra {
        // Tests run in parallel threads: the fd may happen to carry the target number already.
        // A duplicate gets another number (the original still holds this one).
        let fd = if fd.as_raw_fd() == target {
            fd.try_clone().expect("duplicating the fd to inherit")
        } else {
            fd
        };
        assert!(fd.as_raw_fd() != target, "source and target fd must differ");
        self.inherit_fds.push((fd, target));
        self
    }

    /// Where the state directory of this invocation lives (`/run/hydra` as root).
    pub fn state_root(mut self, p: impl Into<PathBuf>) -> Hydra {
        self.state_root = p.into();
        self
    }

    /// Use another `hydra` binary (e.g. a copy a throw-away user can reach).
    pub fn program(mut self, p: impl Into<PathBuf>) -> Hydra {
        self.program = p.into();
        self
    }

    pub fn spawn(self) -> Running {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        if let Some(vars) = &self.clear_env {
            cmd.env_clear();
            cmd.envs(vars.iter().map(|(k, v)| (k, v)));
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd.stdin(match self.stdin {
            StdinMode::Null => Stdio::null(),
            _ => Stdio::piped(),
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some((uid, gid)) = self.user {
            // std drops the supplementary groups (setgroups(0)) when root changes the uid.
            cmd.uid(uid).gid(gid);
        }
        let pairs: Vec<(RawFd, RawFd)> = self
            .inherit_fds
            .iter()
            .map(|(fd, target)| (fd.as_raw_fd(), *target))
            .collect();
        if !pairs.is_empty() {
            // SAFETY: only dup2 (async-signal-safe) runs between fork and exec; dup2 leaves the
            // target without FD_CLOEXEC, so hydra inherits it.
            unsafe {
                cmd.pre_exec(move || {
                    for &(src, dst) in &pairs {
                        if libc::dup2(src, dst) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {} {:?}: {e}", self.program.display(), self.args));
        drop(self.inherit_fds);
        let stdout = Pipe::start(child.stdout.take().expect("stdout pipe"));
        let stderr = Pipe::start(child.stderr.take().expect("stderr pipe"));
        let mut stdin = child.stdin.take();
        if let StdinMode::Bytes(bytes) = &self.stdin {
            let mut s = stdin.take().expect("stdin pipe");
            let bytes = bytes.clone();
            // A writer thread: hydra may not read stdin at all (EPIPE is fine).
            thread::spawn(move || {
                let _ = s.write_all(&bytes);
            });
        }
        Running {
            pid: child.id() as i32,
            child: Some(child),
            stdin,
            stdout,
            stderr,
            name: self.name,
            args: self.args,
            deadline: started + self.timeout,
            state_root: self.state_root,
            check_clean: self.check_clean,
        }
    }

    /// Run to completion (bounded by the timeout) and check the host is clean.
    pub fn output(self) -> Output {
        self.spawn().wait()
    }
}

/// A pipe drained by a thread into a shared buffer.
struct Pipe {
    buf: Arc<Mutex<Vec<u8>>>,
    eof: Arc<AtomicBool>,
    inode: u64,
}

impl Pipe {
    fn start<R: Read + AsRawFd + Send + 'static>(mut r: R) -> Pipe {
        let inode = fs::metadata(format!("/proc/self/fd/{}", r.as_raw_fd()))
            .map(|m| m.ino())
            .unwrap_or(0);
        let buf = Arc::new(Mutex::new(Vec::new()));
        let eof = Arc::new(AtomicBool::new(false));
        let (b, e) = (buf.clone(), eof.clone());
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
            e.store(true, Ordering::SeqCst);
        });
        Pipe { buf, eof, inode }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    fn done(&self) -> bool {
        self.eof.load(Ordering::SeqCst)
    }
}

/// A running `hydra` process.
pub struct Running {
    pub pid: i32,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Pipe,
    stderr: Pipe,
    name: Option<String>,
    args: Vec<OsString>,
    deadline: Instant,
    state_root: PathBuf,
    check_clean: bool,
}

impl Running {
    pub fn name(&self) -> &str {
        self.name.as_deref().expect("this invocation has no --name")
    }

    pub fn stdout_so_far(&self) -> String {
        self.stdout.text()
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.text()
    }

    /// Wait (bounded) until stdout contains `needle`; panics with the output so far otherwise.
    pub fn wait_for_stdout(&mut self, needle: &str) {
        loop {
            if self.stdout.text().contains(needle) {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited && self.stdout.done() {
                let (out, err) = (self.stdout.text(), self.stderr.text());
                panic!(
                    "hydra {:?} exited before printing {needle:?}\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
                    self.args
                );
            }
            if Instant::now() > self.deadline {
                self.kill_all();
                let (out, err) = (self.stdout.text(), self.stderr.text());
                panic!(
                    "timed out waiting for {needle:?} from hydra {:?}\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
                    self.args
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn write_stdin(&mut self, data: &str) {
        let s = self.stdin.as_mut().expect("spawned without stdin_pipe()");
        s.write_all(data.as_bytes())
            .expect("writing to hydra's stdin");
        s.flush().expect("flushing hydra's stdin");
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Send a signal to the hydra process itself.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        let r = unsafe { libc::kill(self.pid, sig) };
        assert_eq!(
            r,
            0,
            "kill({}, {sig}): {}",
            self.pid,
            std::io::Error::last_os_error()
        );
    }

    /// Kill every process hydra started (found by parentage and by holding our pipes), give
    /// hydra a moment to clean up after them, then kill hydra itself if it is still there.
    fn kill_all(&mut self) {
        let mut victims = descendants(self.pid);
        victims.extend(pipe_holders(&[self.stdout.inode, self.stderr.inode]));
        victims.retain(|&p| p != self.pid && p != std::process::id() as i32);
        for p in victims {
            // SAFETY: kill(2) of a process this test started (a descendant of its hydra child or a
            // holder of the pipes only that child received).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        if let Some(c) = self.child.as_mut() {
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end && matches!(c.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait for hydra to exit (bounded), collect its output and check the host is clean.
    pub fn wait(mut self) -> Output {
        self.stdin = None;
        let status = loop {
            let c = self.child.as_mut().expect("already waited");
            match c.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(e) => panic!("waiting for hydra: {e}"),
            }
            if Instant::now() > self.deadline {
                self.kill_all();
                let (out, err) = (self.stdout.text(), self.stderr.text());
                panic!(
                    "hydra {:?} did not finish within its timeout; killed it\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
                    self.args
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        self.child = None;
        let grace = Instant::now() + PIPE_GRACE;
        while !(self.stdout.done() && self.stderr.done()) {
            if Instant::now() > grace {
                let holders = pipe_holders(&[self.stdout.inode, self.stderr.inode]);
                for &p in &holders {
                    // SAFETY: these processes hold the pipes only our hydra child received.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                panic!(
                    "hydra {:?} exited ({status}) but processes {holders:?} still held its stdout/stderr \
                     {PIPE_GRACE:?} later (a container process outlived hydra; killed them)\n\
                     --- stdout ---\n{}\n--- stderr ---\n{}",
                    self.args,
                    self.stdout.text(),
                    self.stderr.text()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
        let out = Output {
            name: self.name.clone(),
            code: status.code(),
            signal: status.signal(),
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        };
        if self.check_clean {
            if let Some(name) = &self.name {
                if let Err(e) = host_leftovers(name, &self.state_root) {
                    panic!("host not clean after the run: {e}\n{out}");
                }
            }
        }
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill_all();
        }
    }
}

/// The result of one hydra invocation.
pub struct Output {
    pub name: Option<String>,
    /// hydra's exit code (None if hydra itself died of a signal).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[name {:?}, exit code {:?}, signal {:?}]\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name, self.code, self.signal, self.stdout, self.stderr
        )
    }
}

impl Output {
    /// hydra's exit code; panics if hydra itself was killed by a signal.
    pub fn code(&self) -> i32 {
        match self.code {
            Some(c) => c,
            None => panic!("hydra itself died of signal {:?}\n{self}", self.signal),
        }
    }

    pub fn assert_code(&self, want: i32) -> &Output {
        assert_eq!(self.code, Some(want), "unexpected exit status\n{self}");
        self
    }

    pub fn assert_ok(&self) -> &Output {
        self.assert_code(0)
    }

    /// stdout, trimmed.
    pub fn out(&self) -> &str {
        self.stdout.trim()
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }

    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Exactly one non-empty line on stderr; returns it.
    pub fn one_stderr_line(&self) -> &str {
        let l = self.stderr_lines();
        assert_eq!(l.len(), 1, "expected exactly one line on stderr\n{self}");
        l[0]
    }

    pub fn assert_stdout_contains(&self, needle: &str) -> &Output {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{self}"
        );
        self
    }

    pub fn assert_stderr_contains(&self, needle: &str) -> &Output {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        self
    }
}

/// Why the host still holds something for container `name` (state dir, cgroup, mount, netns).
pub fn host_leftovers(name: &str, state_root: &Path) -> Result<(), String> {
    let mut found = Vec::new();
    let state = state_root.join(name);
    if state.exists() {
        found.push(format!("state directory {}", state.display()));
    }
    for dir in cgroup_hydra_dirs() {
        let d = dir.join(name);
        if d.exists() {
            found.push(format!("cgroup {}", d.display()));
        }
    }
    if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
        for l in mi.lines().filter(|l| l.contains(name)) {
            found.push(format!("mount {l}"));
        }
    }
    if let Ok(rd) = fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().contains(name) {
                found.push(format!("netns {}", e.path().display()));
            }
        }
    }
    for chain in nft_chains_of(name) {
        found.push(format!("nft chain inet hydra {chain}"));
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("leftovers for {name}: {}", found.join("; ")))
    }
}

/// The chains of container `name` in hydra's nftables table (`<name>-<role>`).
pub fn nft_chains_of(name: &str) -> Vec<String> {
    let Ok(out) = Command::new("nft")
        .args(["list", "table", "inet", "hydra"])
        .output()
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("chain "))
        .map(|l| l.trim_end_matches(" {").to_string())
        .filter(|c| {
            ["pre", "dnat", "post", "snat"]
                .iter()
                .any(|role| *c == format!("{name}-{role}"))
        })
        .collect()
}

/// Panics if the host still holds anything for container `name`.
pub fn assert_host_clean(name: &str, state_root: &Path) {
    if let Err(e) = host_leftovers(name, state_root) {
        panic!("host not clean: {e}");
    }
}

/// A file's content without surrounding white space (a cgroup or /proc value).
pub fn read_trim(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Whether `controller` has a cgroup v1 hierarchy of its own.
pub fn cgroup_v1(controller: &str) -> bool {
    Path::new("/sys/fs/cgroup").join(controller).is_dir()
}

/// The cgroup `hydra/<rel>` of `controller` (v1) or of the unified tree (v2).
pub fn cgroup_dir(controller: &str, rel: &str) -> PathBuf {
    let base = if cgroup_v1(controller) {
        Path::new("/sys/fs/cgroup").join(controller)
    } else {
        PathBuf::from("/sys/fs/cgroup")
    };
    base.join("hydra").join(rel)
}

/// The CPU quota of cgroup `hydra/<rel>` as `QUOTA PERIOD` (µs) on v1 and v2 alike (`max` for
/// none on v2, `-1` on v1).
pub fn cpu_quota(rel: &str) -> String {
    let dir = cgroup_dir("cpu", rel);
    if cgroup_v1("cpu") {
        format!(
            "{} {}",
            read_trim(&dir.join("cpu.cfs_quota_us")),
            read_trim(&dir.join("cpu.cfs_period_us"))
        )
    } else {
        read_trim(&dir.join("cpu.max"))
    }
}

/// `/sys/fs/cgroup/hydra` (pure v2) and `/sys/fs/cgroup/<controller>/hydra` for every hierarchy.
pub fn cgroup_hydra_dirs() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut v = vec![root.join("hydra")];
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                v.push(e.path().join("hydra"));
            }
        }
    }
    v
}

/// Connects to `addr`, retrying (for up to 10 s) while a server inside a process starts; reads
/// on the stream time out after 5 s.
pub fn connect_retrying(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("setting a read timeout");
                return s;
            }
            Err(e) => {
                assert!(Instant::now() < end, "connecting to {addr}: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Poll (bounded) until `path` exists.
pub fn wait_for_path(path: &Path, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if path.exists() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    path.exists()
}

/// (pid, ppid) of every process on the host.
fn process_table() -> Vec<(i32, i32)> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...; comm may hold spaces and parentheses.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                v.push((pid, ppid));
            }
        }
    }
    v
}

/// All descendants of `pid` on the host.
pub fn descendants(pid: i32) -> Vec<i32> {
    let table = process_table();
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &(c, pp) in &table {
            if pp == p && !out.contains(&c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// Processes that hold a pipe with one of these inodes open.
fn pipe_holders(inodes: &[u64]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    let wanted: Vec<String> = inodes
        .iter()
        .filter(|&&i| i != 0)
        .map(|i| format!("pipe:[{i}]"))
        .collect();
    if wanted.is_empty() {
        return v;
    }
    for (pid, _) in process_table() {
        if pid == me {
            continue;
        }
        let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        if rd.flatten().any(|e| {
            fs::read_link(e.path())
                .map(|l| wanted.iter().any(|w| l.as_os_str() == w.as_str()))
                .unwrap_or(false)
        }) {
            v.push(pid);
        }
    }
    v
}

/// The host pid of the container's pid 1 among the descendants of `hydra_pid` (polls, bounded).
pub fn container_pid1(hydra_pid: i32, timeout: Duration) -> Option<i32> {
    let end = Instant::now() + timeout;
    loop {
        for p in descendants(hydra_pid) {
            if let Ok(st) = fs::read_to_string(format!("/proc/{p}/status")) {
                if let Some(l) = st.lines().find(|l| l.starts_with("NSpid:")) {
                    let ids: Vec<&str> = l.split_whitespace().skip(1).collect();
                    if ids.len() >= 2 && ids.last() == Some(&"1") {
                        return Some(p);
                    }
                }
            }
        }
        if Instant::now() > end {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// `Key:\tvalue` fields of a /proc/<pid>/status text.
pub fn status_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A hexadecimal capability mask field (e.g. `CapEff`) of a status text.
pub fn cap_field(fields: &BTreeMap<String, String>, key: &str) -> u64 {
    let v = fields
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status: {fields:?}"));
    u64::from_str_radix(v, 16).unwrap_or_else(|e| panic!("{key} = {v:?}: {e}"))
}

/// Path, type, size, mode, owner and mtime of everything below `root` (to prove it unchanged).
pub fn tree_snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut m = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            let target = fs::read_link(&p)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            m.insert(
                p.strip_prefix(root).unwrap().to_path_buf(),
                format!(
                    "mode={:o} uid={} gid={} size={} mtime={}.{} ino={} link={target}",
                    md.mode(),
                    md.uid(),
                    md.gid(),
                    md.size(),
                    md.mtime(),
                    md.mtime_nsec(),
                    md.ino()
                ),
            );
            if md.is_dir() {
                todo.push(p);
            }
        }
    }
    m
}

/// The namespace link (`net:[4026531840]`) of the test process itself.
pub fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap_or_else(|e| panic!("reading /proc/self/ns/{kind}: {e}"))
        .display()
        .to_string()
}

/// Open a directory (close-on-exec) to hand to hydra as an inherited fd.
pub fn open_dir(path: &Path) -> OwnedFd {
    fs::File::open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
        .into()
}

/// Run a host command (for setup), panicking with its output when it fails.
pub fn host_cmd(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {prog} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `hydra ports NAME --json`: one object per mapping.
pub fn ports(name: &str) -> Vec<serde_json::Value> {
    let out = Hydra::bare().args(["ports", name, "--json"]).output();
    out.assert_ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ports --json: {e}\n{out}"))
}

/// What `process` printed in a foreground `up` (its `name | line` lines, without the prefix).
pub fn said(out: &Output, process: &str) -> Vec<String> {
    out.stdout
        .lines()
        .filter_map(|l| l.split_once(" | "))
        .filter(|(name, _)| name.trim_end() == process)
        .map(|(_, line)| line.trim_end().to_string())
        .collect()
}

/// A YAML application (`hydra up`) in a temp dir, brought down (and checked clean) when dropped.
pub struct App {
    pub name: String,
    pub dir: TempDir,
}

impl App {
    /// Writes `hydra.yaml` with `body` below a header naming the container and the rootfs.
    pub fn new(label: &str, body: &str) -> App {
        require_root();
        let name = unique_name(label);
        let dir = TempDir::new(label);
        let yaml = format!(
            "version: '1.0'\ncontainer: {{name: {name}, rootfs: {}}}\n{body}",
            rootfs().display()
        );
        fs::write(dir.join("hydra.yaml"), yaml).expect("writing hydra.yaml");
        App { name, dir }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join("hydra.yaml")
    }

    /// `hydra exec NAME/PROCESS -- sh -c SCRIPT`.
    pub fn exec_sh(&self, process: &str, script: &str) -> Output {
        Hydra::bare()
            .args([
                "exec",
                &format!("{}/{process}", self.name),
                "--",
                "sh",
                "-c",
                script,
            ])
            .output()
    }

    /// `hydra up -f` in the foreground: every process runs to its end.
    pub fn up_foreground(&self) -> Output {
        let out = Hydra::bare().args(["up", "-f"]).arg(self.file()).output();
        out.assert_ok();
        out
    }

    pub fn up_detached(&self) -> Output {
        let out = Hydra::bare()
            .args(["up", "-d", "-f"])
            .arg(self.file())
            .output();
        out.assert_ok();
        out
    }

    /// This container's processes in `hydra ps --json`.
    pub fn ps(&self) -> Vec<serde_json::Value> {
        let out = Hydra::bare().args(["ps", "--json"]).output();
        out.assert_ok();
        let all: Vec<serde_json::Value> =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ps --json: {e}\n{out}"));
        all.into_iter()
            .filter(|p| p["container"] == self.name.as_str())
            .collect()
    }

    pub fn process(&self, name: &str) -> serde_json::Value {
        self.ps()
            .into_iter()
            .find(|p| p["process"] == name)
            .unwrap_or_else(|| panic!("{name} not in ps"))
    }

    /// Polls `ps` until `check` holds (bounded).
    pub fn wait_for(&self, what: &str, check: impl Fn(&[serde_json::Value]) -> bool) {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let ps = self.ps();
            if check(&ps) {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: {ps:#?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `hydra stats --no-stream --json NAME`: the container's row (process null) and one per
    /// process.
    pub fn stats(&self) -> Vec<serde_json::Value> {
        let out = Hydra::bare()
            .args(["stats", "--no-stream", "--json", &self.name])
            .output();
        out.assert_ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("stats --json: {e}\n{out}"))
    }

    pub fn down(&self) -> Output {
        Hydra::bare().args(["down", &self.name]).output()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if Path::new("/run/hydra").join(&self.name).exists() {
            let _ = self.down();
        }
        if !thread::panicking() {
            assert_host_clean(&self.name, Path::new("/run/hydra"));
        }
    }
}

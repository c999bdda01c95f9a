//! A throw-away user for rootless tests (created by the test, removed by a guard even when the
//! test fails) with its own copies of the rootfs and of hydra, and a volume directory.

use super::*;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// useradd/userdel lock /etc/passwd: one at a time within this test binary.
pub static USERADD: Mutex<()> = Mutex::new(());
pub static N: AtomicUsize = AtomicUsize::new(0);

/// Run a host command, retrying while something else holds the /etc/passwd lock.
pub fn try_retry(prog: &str, args: &[&str]) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..20 {
        match std::process::Command::new(prog).args(args).output() {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => last = format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr)),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    Err(format!("{prog} {args:?} failed: {last}"))
}

pub fn retry(prog: &str, args: &[&str]) {
    if let Err(e) = try_retry(prog, args) {
        panic!("{e}");
    }
}

/// A throw-away user with its own rootfs copy, hydra copy and volume directory.
pub struct RootlessUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub dir: PathBuf,
}

impl RootlessUser {
    pub fn new() -> RootlessUser {
        require_root();
        let name = format!(
            "hydra-rl-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = PathBuf::from(format!("/tmp/{name}"));
        {
            let _g = USERADD.lock().unwrap_or_else(|e| e.into_inner());
            let _ = std::process::Command::new("userdel").arg(&name).output();
            let home = format!("{}/home", dir.display());
            retry("useradd", &["-M", "-s", "/bin/sh", "-d", &home, &name]);
        }
        // From here on the guard removes the user, its state and files, even on a panic.
        let mut u = RootlessUser {
            name: name.clone(),
            uid: u32::MAX,
            gid: u32::MAX,
            dir,
        };
        u.uid = host_cmd("id", &["-u", &name]).trim().parse().expect("uid");
        u.gid = host_cmd("id", &["-g", &name]).trim().parse().expect("gid");
        assert_ne!(u.uid, 0);
        let _ = fs::remove_dir_all(&u.dir);
        fs::create_dir_all(&u.dir).unwrap();
        host_cmd(
            "cp",
            &[
                "-a",
                &rootfs().display().to_string(),
                &u.rootfs().display().to_string(),
            ],
        );
        fs::create_dir_all(u.dir.join("home")).unwrap();
        fs::create_dir_all(u.volume()).unwrap();
        fs::create_dir_all(u.xdg_runtime_dir()).unwrap();
        host_cmd(
            "chmod",
            &["0700", &u.xdg_runtime_dir().display().to_string()],
        );
        let owner = format!("{}:{}", u.uid, u.gid);
        for p in [
            u.rootfs(),
            u.dir.join("home"),
            u.volume(),
            u.xdg_runtime_dir(),
        ] {
            host_cmd("chown", &["-R", &owner, &p.display().to_string()]);
        }
        // The checkout may not be traversable by other users: give the user its own binary.
        fs::copy(hydra_bin(), u.hydra()).unwrap();
        host_cmd("chmod", &["0755", &u.hydra().display().to_string()]);
        u
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn hydra(&self) -> PathBuf {
        self.dir.join("hydra")
    }

    pub fn volume(&self) -> PathBuf {
        self.dir.join("vol")
    }

    /// A private XDG_RUNTIME_DIR for tests that set one (0700, owned by the user).
    pub fn xdg_runtime_dir(&self) -> PathBuf {
        self.dir.join("xdg")
    }

    /// hydra's state root for this user (no XDG_RUNTIME_DIR in its environment).
    pub fn state_root(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/hydra-{}", self.uid))
    }

    pub fn as_user(&self, h: Hydra) -> Hydra {
        let home = self.dir.join("home").display().to_string();
        h.program(self.hydra())
            .user(self.uid, self.gid)
            .clean_env(&[
                ("HOME", &home),
                ("USER", &self.name),
                ("LOGNAME", &self.name),
                (
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                ),
            ])
            .state_root(self.state_root())
    }

    /// `hydra run --rootfs <own copy> --name ...` as this user.
    pub fn run(&self, label: &str) -> Hydra {
        self.as_user(Hydra::run_in(label, &self.rootfs()))
    }
}

impl Drop for RootlessUser {
    fn drop(&mut self) {
        if self.uid != 0 && self.uid != u32::MAX {
            let _ = fs::remove_dir_all(self.state_root());
        }
        let _ = fs::remove_dir_all(&self.dir);
        let _g = USERADD.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = try_retry("userdel", &[&self.name]) {
            if !std::thread::panicking() {
                panic!("{e}");
            }
        }
    }
}

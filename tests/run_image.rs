//! Running from `.hcon` images: `hydra run --image` and `container.path` in YAML. The image is
//! verified and decrypted into hydra's image cache (here a cache of the test's own, through
//! `HYDRA_IMAGE_CACHE`) before any of it is used; a process run from it is as isolated as one
//! run from the directory; a cached image is reused without unpacking again but still needs
//! the key; the wrong key or a damaged image is one line and exit 125.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// An encrypted image of the test rootfs, its key pair and a cache directory.
struct Image {
    dir: TempDir,
}

impl Image {
    fn new(label: &str) -> Image {
        require_root();
        let dir = TempDir::new(label);
        let key = dir.join("k");
        Hydra::bare()
            .args(["keygen", "-o"])
            .arg(&key)
            .output()
            .assert_ok();
        Hydra::bare()
            .args(["image", "pack"])
            .arg(rootfs())
            .arg("-o")
            .arg(dir.join("app.hcon"))
            .arg("--recipient")
            .arg(dir.join("k.pub"))
            .output()
            .assert_ok();
        Image { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("app.hcon")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("k")
    }

    fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// `hydra run --image … --key …` with this test's cache.
    fn run(&self, key: Option<&Path>) -> Hydra {
        let mut h = Hydra::bare()
            .env("HYDRA_IMAGE_CACHE", &self.cache().display().to_string())
            .args(["run", "--name", &unique_name("img"), "--image"])
            .arg(self.file());
        if let Some(k) = key {
            h = h.arg("--key").arg(k);
        }
        h
    }

    /// Everything in the cache.
    fn cache_entries(&self) -> Vec<PathBuf> {
        fs::read_dir(self.cache())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// The unpacked images in the cache.
    fn cached(&self) -> Vec<PathBuf> {
        self.cache_entries()
            .into_iter()
            .filter(|p| p.is_dir())
            .collect()
    }

    /// A key pair the image is not encrypted for.
    fn other_key(&self) -> PathBuf {
        let other = self.dir.join("other");
        Hydra::bare()
            .args(["keygen", "-o"])
            .arg(&other)
            .output()
            .assert_ok();
        other
    }
}

#[test]
fn a_process_from_an_encrypted_image_is_isolated_like_one_from_the_directory() {
    let img = Image::new("img-run");
    let key = img.key();
    let out = img
        .run(Some(&key))
        .sh(
            "echo pid $$; ls /proc | grep -c '^[0-9]'; echo secret > /etc/mine; cat /etc/mine; \
             ip -o link | wc -l",
        )
        .output();
    out.assert_ok();
    // The command is pid 2 under hydra's init; it sees only its own processes; it writes to its
    // private layer; it has only lo.
    assert_eq!(out.lines()[0], "pid 2", "{out}");
    let seen: u32 = out.lines()[1].trim().parse().expect("a process count");
    assert!(seen <= 4, "sees {seen} processes\n{out}");
    assert_eq!(out.lines()[2], "secret", "{out}");
    assert_eq!(out.lines()[3].trim(), "1", "{out}");
    // The write stayed in that process's layer: the shared image is untouched.
    let cached = img.cached();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(!cached[0].join("etc/mine").exists());
    let again = img
        .run(Some(&key))
        .sh("cat /etc/mine || echo absent")
        .output();
    again.assert_ok();
    assert_eq!(again.lines(), ["absent"], "{again}");
}

#[test]
fn a_cached_image_is_reused_but_still_needs_its_key() {
    let img = Image::new("img-cache");
    let key = img.key();
    img.run(Some(&key)).cmd(["true"]).output().assert_ok();
    let cached = img.cached();
    assert_eq!(cached.len(), 1);
    let inode = fs::metadata(&cached[0]).expect("cached image").ino();
    img.run(Some(&key)).cmd(["true"]).output().assert_ok();
    assert_eq!(
        fs::metadata(&cached[0]).expect("cached image").ino(),
        inode,
        "the image was unpacked again"
    );
    // Without the key, or with another one, the cached copy is not handed out.
    let none = img.run(None).cmd(["true"]).output();
    none.assert_code(125);
    assert!(none.one_stderr_line().contains("a key is needed"), "{none}");
    let other = img.other_key();
    let wrong = img.run(Some(&other)).cmd(["true"]).output();
    wrong.assert_code(125);
    assert!(wrong.one_stderr_line().contains("wrong key"), "{wrong}");
}

#[test]
fn a_wrong_key_on_first_use_leaves_the_cache_empty() {
    let img = Image::new("img-wrong");
    let other = img.other_key();
    let wrong = img.run(Some(&other)).sh("echo RAN").output();
    wrong.assert_code(125);
    assert!(!wrong.stdout.contains("RAN"), "{wrong}");
    let left = img.cache_entries();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

#[test]
fn a_damaged_image_runs_nothing_and_leaves_no_cache_entry() {
    let img = Image::new("img-bad");
    let verify = |key: &Path| {
        Hydra::bare()
            .args(["image", "verify"])
            .arg(img.file())
            .arg("--key")
            .arg(key)
            .output()
    };
    verify(&img.key())
        .assert_ok()
        .assert_stdout_contains("verified, sha256:");
    let mut bytes = fs::read(img.file()).expect("image");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(img.file(), &bytes).expect("damaging the image");
    let out = img.run(Some(&img.key())).sh("echo RAN").output();
    out.assert_code(125);
    assert!(!out.stdout.contains("RAN"), "{out}");
    assert!(out.one_stderr_line().contains("does not verify"), "{out}");
    let left = img.cache_entries();
    assert!(left.is_empty(), "left in the cache: {left:?}");
    let bad = verify(&img.key());
    bad.assert_code(125);
    assert!(bad.one_stderr_line().contains("does not verify"), "{bad}");
}

#[test]
fn up_runs_container_path_with_the_declared_encryption_and_key() {
    let img = Image::new("img-up");
    let name = unique_name("img-up");
    let yaml = img.dir.join("hydra.yaml");
    let write = |encryption: &str| {
        fs::write(
            &yaml,
            format!(
                "version: '1.0'\ncontainer: {{name: {name}, path: ./app.hcon}}\n\
                 security: {{encryption: {encryption}, key: ./k}}\n\
                 processes:\n  - {{name: hello, command: ['sh', '-c', 'echo from the image; hostname']}}\n"
            ),
        )
        .expect("writing hydra.yaml")
    };
    write("kyber_aes");
    let up = |h: Hydra| {
        h.env("HYDRA_IMAGE_CACHE", &img.cache().display().to_string())
            .args(["up", "-f"])
            .arg(&yaml)
            .output()
    };
    let out = up(Hydra::bare());
    out.assert_ok();
    assert!(out.stdout.contains("hello | from the image"), "{out}");
    assert!(
        out.stdout.contains("hello | hello\n"),
        "the hostname is the process name\n{out}"
    );
    // An image that is not encrypted as declared is refused before anything starts.
    write("aes");
    let refused = up(Hydra::bare());
    refused.assert_code(125);
    assert!(
        refused
            .one_stderr_line()
            .contains("it is encrypted with kyber_aes, not aes as declared"),
        "{refused}"
    );
    assert!(!Path::new("/run/hydra").join(&name).exists());
}

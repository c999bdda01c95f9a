//! `.hcon` images through the real binary: `hydra keygen`, `hydra image pack|unpack|inspect`.
//! Round trips of the busybox rootfs and of a synthetic tree with every kind of entry (symlinks,
//! hard links, device nodes, a fifo, a socket, setuid/setgid/sticky modes, odd owners, an
//! xattr) in each encryption mode, compared with `diff -r` and `find -printf`; and every kind of
//! tampering: exit 125, one line on stderr, no output directory (and no temporary one) left.

mod common;

use common::*;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

fn hydra<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    Hydra::bare().args(args).output()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Keys for the three modes: an AES key file and two X-Wing key pairs.
struct Keys {
    aes: PathBuf,
    alice: PathBuf,
    bob: PathBuf,
}

fn keys(dir: &TempDir) -> Keys {
    let k = Keys {
        aes: dir.join("aes.key"),
        alice: dir.join("alice"),
        bob: dir.join("bob"),
    };
    hydra(["keygen", "--aes", "-o", s(&k.aes)]).assert_ok();
    hydra(["keygen", "-o", s(&k.alice)]).assert_ok();
    hydra(["keygen", "-o", s(&k.bob)]).assert_ok();
    k
}

fn pub_of(key: &Path) -> String {
    format!("{}.pub", s(key))
}

/// Pack arguments and the key that unpacks, for each mode.
fn modes(k: &Keys) -> Vec<(&'static str, Vec<String>, Option<PathBuf>)> {
    vec![
        ("none", vec![], None),
        (
            "aes",
            vec![
                "--encrypt".into(),
                "aes".into(),
                "--key-file".into(),
                s(&k.aes).into(),
            ],
            Some(k.aes.clone()),
        ),
        (
            "kyber_aes",
            vec![
                "--encrypt".into(),
                "kyber_aes".into(),
                "--recipient".into(),
                pub_of(&k.alice),
                "--recipient".into(),
                pub_of(&k.bob),
            ],
            Some(k.bob.clone()),
        ),
    ]
}

fn pack(src: &Path, image: &Path, extra: &[String]) {
    let mut args: Vec<String> = vec![
        "image".into(),
        "pack".into(),
        s(src).into(),
        "-o".into(),
        s(image).into(),
    ];
    args.extend_from_slice(extra);
    let out = hydra(args);
    out.assert_ok();
    assert!(out.stderr.is_empty(), "pack printed on stderr\n{out}");
}

fn unpack(image: &Path, dest: &Path, key: Option<&Path>) -> Output {
    let mut args = vec!["image", "unpack", s(image), "-o", s(dest)];
    if let Some(k) = key {
        args.extend(["--key", s(k)]);
    }
    hydra(args)
}

/// One line per entry: path, mode (with setuid/setgid/sticky), owner, group, link count, type,
/// symlink target, mtime.
fn snapshot(dir: &Path) -> String {
    let out = Command::new("find")
        .arg(".")
        .args(["-printf", "%p %m %U %G %n %y %l %T@\\n"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "find failed in {}", dir.display());
    let mut lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// `diff -r` (symlinks compared as links; special files, named special-*, left to the
/// snapshot) and the snapshot comparison.
fn assert_same_tree(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference", "-x", "special-*"])
        .args([a, b])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "diff -r {} {}:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (sa, sb) = (snapshot(a), snapshot(b));
    if sa != sb {
        let only_a: Vec<&str> = sa.lines().filter(|l| !sb.contains(l)).collect();
        let only_b: Vec<&str> = sb.lines().filter(|l| !sa.contains(l)).collect();
        panic!("trees differ\nsource only: {only_a:#?}\nunpacked only: {only_b:#?}");
    }
}

fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings; the buffer is valid for its length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}

fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> bool {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings; the value is valid for its length.
    unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

/// Deterministic incompressible bytes.
fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const XATTR: &str = "user.hydra.test";
const XATTR_VALUE: &[u8] = b"value\0with a NUL";

/// A tree with every kind of entry; returns whether the filesystem took the xattrs.
fn synthetic_tree(root: &Path) -> bool {
    let p = |rel: &str| root.join(rel);
    for d in ["etc", "bin", "nested/deep/er", "tmp", "shared", "ro", "dev"] {
        fs::create_dir_all(p(d)).unwrap();
    }
    fs::write(p("etc/hostname"), "image-test\n").unwrap();
    fs::write(p("etc/empty"), "").unwrap();
    fs::write(p("name with spaces"), "spaces").unwrap();
    fs::write(p("nested/deep/er/ünïcode"), "utf-8").unwrap();
    // Spans several 64 KiB chunks, incompressible.
    fs::write(p("bin/big.bin"), noise(700 * 1024, 0x1234_5678)).unwrap();
    fs::write(p("bin/suid"), "#!/bin/sh\n").unwrap();
    fs::write(p("bin/sgid"), "#!/bin/sh\n").unwrap();
    fs::write(p("ro/inside"), "read-only dir").unwrap();
    fs::write(p("etc/secret"), "mode 0").unwrap();

    std::os::unix::fs::symlink("../etc/hostname", p("bin/rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", p("bin/abs-link")).unwrap();
    std::os::unix::fs::symlink("/no/such/target", p("bin/dangling")).unwrap();
    std::os::unix::fs::symlink("deep", p("nested/dir-link")).unwrap();
    fs::hard_link(p("etc/hostname"), p("etc/hostname-hard")).unwrap();
    fs::hard_link(p("etc/hostname"), p("nested/deep/hostname-hard")).unwrap();

    let node = |rel: &str, kind: SFlag, perm: u32, dev: u64| {
        mknod(&p(rel), kind, Mode::from_bits_truncate(perm), dev)
            .unwrap_or_else(|e| panic!("mknod {rel}: {e}"));
    };
    node("dev/special-null", SFlag::S_IFCHR, 0o666, makedev(1, 3));
    node("dev/special-loop", SFlag::S_IFBLK, 0o660, makedev(7, 200));
    node("dev/special-fifo", SFlag::S_IFIFO, 0o620, 0);
    node("dev/special-sock", SFlag::S_IFSOCK, 0o755, 0);
    fs::hard_link(p("dev/special-fifo"), p("dev/special-fifo-hard")).unwrap();

    let chmod = |rel: &str, mode: u32| {
        fs::set_permissions(p(rel), fs::Permissions::from_mode(mode)).unwrap();
    };
    let chown = |rel: &str, uid: u32, gid: u32| {
        std::os::unix::fs::lchown(p(rel), Some(uid), Some(gid)).unwrap();
    };
    chown("etc/hostname", 12345, 54321);
    chown("bin/abs-link", 777, 888);
    chown("nested/deep", 4_000_000, 65534);
    chown("dev/special-null", 0, 5);
    chown("bin/suid", 1000, 1000);
    chmod("bin/suid", 0o4755); // after the chown, which clears setuid
    chmod("bin/sgid", 0o2711);
    chmod("shared", 0o2775);
    chmod("tmp", 0o1777);
    chmod("etc/secret", 0o000);
    chmod("ro", 0o555);

    let xattrs = lsetxattr(&p("etc/hostname"), XATTR, XATTR_VALUE)
        && lsetxattr(&p("nested"), XATTR, b"on a directory");
    if !xattrs {
        println!(
            "note: {} refuses user.* xattrs; their assertion is skipped",
            root.display()
        );
    }
    xattrs
}

#[test]
fn a_debootstrap_sized_system_tree_round_trips_encrypted() {
    require_root();
    // The host's /usr/share/doc: a distribution's worth of files (over 100 MB, thousands of
    // entries, symlinks into other packages' directories), packed as it is on the host.
    let source = Path::new("/usr/share/doc");
    let dir = TempDir::new("image-big");
    let k = keys(&dir);
    let image = dir.join("doc.hcon");
    let dest = dir.join("out");
    pack(source, &image, &["--recipient".into(), pub_of(&k.alice)]);
    let out = unpack(&image, &dest, Some(&k.alice));
    out.assert_ok();
    assert_same_tree(source, &dest);
}

#[test]
fn the_busybox_rootfs_round_trips_in_every_mode() {
    require_root();
    let rootfs = rootfs();
    let dir = TempDir::new("image-busybox");
    let k = keys(&dir);
    for (mode, args, key) in modes(&k) {
        let image = dir.join(format!("busybox-{mode}.hcon"));
        let dest = dir.join(format!("out-{mode}"));
        pack(&rootfs, &image, &args);
        let out = unpack(&image, &dest, key.as_deref());
        out.assert_ok();
        assert!(out.stderr.is_empty(), "{out}");
        assert_same_tree(&rootfs, &dest);
    }
}

#[test]
fn a_tree_with_every_kind_of_entry_round_trips_in_every_mode() {
    require_root();
    let dir = TempDir::new("image-synthetic");
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    let xattrs = synthetic_tree(&src);
    let k = keys(&dir);
    for (mode, mut args, key) in modes(&k) {
        args.extend(["--chunk-size".into(), "64K".into()]);
        let image = dir.join(format!("tree-{mode}.hcon"));
        let dest = dir.join(format!("out-{mode}"));
        pack(&src, &image, &args);

        let info = hydra(["image", "inspect", "--json", s(&image)]);
        info.assert_ok();
        let info: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
        assert_eq!(info["encryption"], mode, "{info}");
        assert!(info["chunks"].as_u64().unwrap() > 10, "{info}");
        assert!(info["entries"].as_u64().unwrap() >= 30, "{info}");
        assert_eq!(
            info["file_bytes"].as_u64(),
            Some(fs::metadata(&image).unwrap().len())
        );

        unpack(&image, &dest, key.as_deref()).assert_ok();
        assert_same_tree(&src, &dest);
        let m = |rel: &str| fs::symlink_metadata(dest.join(rel)).unwrap();
        assert_eq!(m("dev/special-null").rdev(), makedev(1, 3));
        assert_eq!(m("dev/special-loop").rdev(), makedev(7, 200));
        assert!(m("dev/special-sock").file_type().is_socket());
        assert_eq!(m("bin/suid").mode() & 0o7777, 0o4755);
        assert_eq!(m("etc/hostname").nlink(), 3);
        if xattrs {
            assert_eq!(
                lgetxattr(&dest.join("etc/hostname"), XATTR).as_deref(),
                Some(XATTR_VALUE)
            );
            assert_eq!(
                lgetxattr(&dest.join("nested"), XATTR).as_deref(),
                Some(&b"on a directory"[..])
            );
        }
    }
}

/// 125, one line on stderr that names the image and says `needle`, and nothing left behind:
/// neither the output directory nor a temporary one beside it.
fn assert_refused(out: &Output, image: &Path, dest: &Path, needle: &str) {
    out.assert_code(125);
    let line = out.one_stderr_line();
    let prefix = format!("hydra: unpacking {}: ", image.display());
    assert!(line.starts_with(&prefix), "line lacks {prefix:?}\n{out}");
    assert!(line.contains(needle), "line lacks {needle:?}\n{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(!dest.exists(), "{} was created\n{out}", dest.display());
    let parent = dest.parent().unwrap();
    let temp_prefix = format!(".{}.hcon-", dest.file_name().unwrap().to_string_lossy());
    let leftovers: Vec<String> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&temp_prefix))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}\n{out}");
}

/// (offset, length) of each chunk record, from the header length and the record heads.
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut at = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    loop {
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((at, 5 + len));
        let last = bytes[at] & 1 == 1;
        at += 5 + len;
        if last {
            assert_eq!(at + 100, bytes.len(), "records do not end at the trailer");
            return out;
        }
    }
}

fn header_len(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize
}

#[test]
fn tampered_truncated_spliced_and_unkeyed_images_are_refused() {
    require_root();
    let dir = TempDir::new("image-tamper");
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    synthetic_tree(&src);
    let k = keys(&dir);
    let chunked = |extra: &[&str]| {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--chunk-size".into(), "64K".into()]);
        v
    };
    let kyber = chunked(&["--recipient", &pub_of(&k.alice)]);
    let (a, b) = (dir.join("a.hcon"), dir.join("b.hcon"));
    pack(&src, &a, &kyber);
    pack(&src, &b, &kyber);
    let plain = dir.join("plain.hcon");
    pack(&src, &plain, &chunked(&[]));
    let aes = dir.join("aes.hcon");
    pack(&src, &aes, &chunked(&["--key-file", s(&k.aes)]));

    let bytes = fs::read(&a).unwrap();
    let recs = records(&bytes);
    assert!(recs.len() > 5);
    let dest = dir.join("out");
    let bad = dir.join("bad.hcon");
    let try_bytes = |image_bytes: &[u8], key: Option<&Path>, needle: &str| {
        fs::write(&bad, image_bytes).unwrap();
        let out = unpack(&bad, &dest, key);
        assert_refused(&out, &bad, &dest, needle);
    };
    let flipped = |at: usize| {
        let mut v = bytes.clone();
        v[at] ^= 0x01;
        v
    };

    // A flipped byte: magic, version, a recipient's KEM ciphertext, the check, chunk heads and
    // bodies and tags (first, middle, last), the trailer.
    try_bytes(&flipped(0), Some(&k.alice), "not a .hcon image");
    try_bytes(&flipped(4), Some(&k.alice), "corrupted header");
    try_bytes(&flipped(100), Some(&k.alice), "corrupted header");
    try_bytes(
        &flipped(header_len(&bytes) - 1),
        Some(&k.alice),
        "corrupted header",
    );
    let (mid, mid_len) = recs[recs.len() / 2];
    let (last, last_len) = recs[recs.len() - 1];
    for at in [
        recs[0].0 + 5,
        recs[0].0 + 1000,
        mid + mid_len / 2,
        mid + mid_len - 1,
        last + 7,
    ] {
        try_bytes(&flipped(at), Some(&k.alice), "does not verify");
    }
    try_bytes(&flipped(mid + 1), Some(&k.alice), "corrupted chunk");
    try_bytes(
        &flipped(last + last_len + 10),
        Some(&k.alice),
        "corrupted trailer",
    );
    try_bytes(
        &flipped(bytes.len() - 1),
        Some(&k.alice),
        "corrupted trailer",
    );

    // Truncated: inside the header, after it, between chunks, inside a chunk, inside the
    // trailer, one byte short.
    for cut in [
        20,
        header_len(&bytes),
        recs[3].0,
        mid + 100,
        last + last_len + 50,
        bytes.len() - 1,
    ] {
        try_bytes(&bytes[..cut], Some(&k.alice), "truncated");
    }
    // Padded.
    let mut padded = bytes.clone();
    padded.push(0);
    try_bytes(&padded, Some(&k.alice), "after the trailer");

    // Two chunks swapped; a chunk dropped.
    let (r1, r2) = (recs[1], recs[2]);
    let mut swapped = bytes[..r1.0].to_vec();
    swapped.extend_from_slice(&bytes[r2.0..r2.0 + r2.1]);
    swapped.extend_from_slice(&bytes[r1.0..r1.0 + r1.1]);
    swapped.extend_from_slice(&bytes[r2.0 + r2.1..]);
    try_bytes(&swapped, Some(&k.alice), "chunk 1 does not verify");
    let mut dropped = bytes[..r1.0].to_vec();
    dropped.extend_from_slice(&bytes[r1.0 + r1.1..]);
    try_bytes(&dropped, Some(&k.alice), "chunk 1 does not verify");

    // Another image of the same tree for the same key: its header on these chunks, and one
    // of its chunks among these.
    let other = fs::read(&b).unwrap();
    assert_eq!(header_len(&other), header_len(&bytes));
    let mut spliced = other[..header_len(&other)].to_vec();
    spliced.extend_from_slice(&bytes[header_len(&bytes)..]);
    try_bytes(&spliced, Some(&k.alice), "another image");
    let other_recs = records(&other);
    let mut mixed = bytes[..r1.0].to_vec();
    mixed.extend_from_slice(&other[other_recs[1].0..other_recs[1].0 + other_recs[1].1]);
    mixed.extend_from_slice(&bytes[r1.0 + r1.1..]);
    try_bytes(&mixed, Some(&k.alice), "chunk 1 does not verify");

    // Keys: none, a stranger's, the wrong kind, the public key instead of the private one.
    let out = unpack(&a, &dest, None);
    assert_refused(&out, &a, &dest, "a key is needed");
    let out = unpack(&a, &dest, Some(&k.bob));
    assert_refused(&out, &a, &dest, "wrong key");
    let out = unpack(&a, &dest, Some(&k.aes));
    assert_refused(&out, &a, &dest, "an AES key");
    let out = unpack(&a, &dest, Some(Path::new(&pub_of(&k.alice))));
    assert_refused(&out, &a, &dest, "public key");
    let out = unpack(&aes, &dest, None);
    assert_refused(&out, &aes, &dest, "a key is needed");
    let other_aes = dir.join("other-aes.key");
    hydra(["keygen", "--aes", "-o", s(&other_aes)]).assert_ok();
    let out = unpack(&aes, &dest, Some(&other_aes));
    assert_refused(&out, &aes, &dest, "wrong key");

    // Unencrypted images are checked all the same.
    let plain_bytes = fs::read(&plain).unwrap();
    let precs = records(&plain_bytes);
    let (pm, pm_len) = precs[precs.len() / 2];
    let mut v = plain_bytes.clone();
    v[pm + pm_len / 2] ^= 0x80;
    try_bytes(&v, None, "does not verify");
    try_bytes(&plain_bytes[..plain_bytes.len() - 30], None, "truncated");
    let (p1, p2) = (precs[1], precs[2]);
    let mut swapped = plain_bytes[..p1.0].to_vec();
    swapped.extend_from_slice(&plain_bytes[p2.0..p2.0 + p2.1]);
    swapped.extend_from_slice(&plain_bytes[p1.0..p1.0 + p1.1]);
    swapped.extend_from_slice(&plain_bytes[p2.0 + p2.1..]);
    try_bytes(&swapped, None, "chunk 1 does not verify");

    // And the untouched images still unpack.
    unpack(&a, &dest, Some(&k.alice)).assert_ok();
    assert_same_tree(&src, &dest);
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
    let dir = TempDir::new("image-keygen");
    let key = dir.join("k");
    let out = hydra(["keygen", "-o", s(&key)]);
    out.assert_ok();
    let text = fs::read_to_string(&key).unwrap();
    let public = fs::read_to_string(pub_of(&key)).unwrap();
    assert!(text.starts_with("-----BEGIN HYDRA X-WING PRIVATE KEY-----\nVersion: 1\nKey-Id: "));
    assert!(public.starts_with("-----BEGIN HYDRA X-WING PUBLIC KEY-----\nVersion: 1\nKey-Id: "));
    let id = text.lines().nth(2).unwrap().trim_start_matches("Key-Id: ");
    assert_eq!(id.len(), 16);
    assert!(public.contains(id));
    assert!(out.stdout.contains(id), "{out}");
    assert_eq!(fs::metadata(&key).unwrap().mode() & 0o777, 0o600);

    let again = hydra(["keygen", "-o", s(&key)]);
    again.assert_code(125);
    assert!(
        again.one_stderr_line().contains("already exists"),
        "{again}"
    );
    assert_eq!(fs::read_to_string(&key).unwrap(), text);
}

#[test]
fn bad_pack_options_are_one_line_errors() {
    let dir = TempDir::new("image-usage");
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "x").unwrap();
    let key = dir.join("k");
    hydra(["keygen", "-o", s(&key)]).assert_ok();
    let image = dir.join("x.hcon");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--encrypt", "aes"], "--key-file"),
        (vec!["--encrypt", "kyber_aes"], "--recipient"),
        (vec!["--recipient", s(&key)], "public key"),
        (vec!["--key-file", s(&key)], "AES key"),
        (vec!["--chunk-size", "1K"], "chunk size"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["image", "pack", s(&src), "-o", s(&image)];
        args.extend(extra.iter().copied());
        let out = hydra(args.clone());
        out.assert_code(125);
        let line = out.one_stderr_line();
        assert!(line.starts_with("hydra: "), "{out}");
        assert!(
            line.contains(needle),
            "{args:?}: line lacks {needle:?}\n{out}"
        );
        assert!(!image.exists(), "{args:?} left an image");
    }
    let out = hydra(["image", "pack", s(&dir.join("nope")), "-o", s(&image)]);
    out.assert_code(125);
    assert!(out.one_stderr_line().contains("nope"), "{out}");
    let inside = src.join("x.hcon");
    let out = hydra(["image", "pack", s(&src), "-o", s(&inside)]);
    out.assert_code(125);
    assert!(out.one_stderr_line().contains("inside"), "{out}");
}

#[test]
fn the_library_api_unpacks_and_inspects() {
    let dir = TempDir::new("image-api");
    let src = dir.join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/b/f"), "content").unwrap();
    let key = dir.join("k");
    hydra(["keygen", "-o", s(&key)]).assert_ok();
    let image = dir.join("x.hcon");
    pack(&src, &image, &["--recipient".into(), pub_of(&key)]);

    let info = hydra::image::inspect(&image).unwrap();
    assert_eq!(info.encryption, hydra::image::Encryption::KyberAes);
    assert_eq!(info.entries, 4);
    let dest = dir.join("out");
    let err = hydra::image::unpack(&image, &dest, None).unwrap_err();
    assert!(err.to_string().contains("a key is needed"), "{err}");
    let digest = hydra::image::unpack(&image, &dest, Some(&key)).unwrap();
    assert_eq!(digest.to_string(), info.digest);
    assert_eq!(fs::read_to_string(dest.join("a/b/f")).unwrap(), "content");
    let err = hydra::image::unpack(&image, &dest, Some(&key)).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

//! The mount plan: every mount a virtual process needs, computed before clone so the child only
//! walks a prepared list. Targets are paths inside the new root, resolved there by the child
//! with `openat2(RESOLVE_IN_ROOT)` so a symlink in the image can never point a mount outside it.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::paths::{DEVICES, DEV_SYMLINKS, MASKED, READ_ONLY};
use crate::config::Volume;

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("rootfs {0} does not exist")]
    RootfsMissing(PathBuf),
    #[error("rootfs {0} is not a directory")]
    RootfsNotDir(PathBuf),
    #[error("rootfs path {0} contains ',' or ':', which overlayfs cannot take")]
    RootfsPathChars(PathBuf),
    #[error("volume source {0} does not exist")]
    VolumeSource(PathBuf),
    #[error("volume target {0} is not allowed (/, /proc and anything below /proc are hydra's)")]
    VolumeTarget(String),
    #[error("path {0} contains a NUL byte")]
    Nul(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether a mount target is a directory or a file (bind targets of files must be files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// A path inside the new root, with what it takes to create it.
#[derive(Debug)]
pub struct Target {
    /// As the user sees it, e.g. `/dev/pts`.
    pub display: String,
    /// Relative to the root, e.g. `dev/pts`.
    pub rel: CString,
    /// Each component to create when missing: (parent relative to root or ".", name).
    pub steps: Vec<(CString, CString)>,
    pub kind: Kind,
    /// Create the target when missing; otherwise a missing target skips the operation.
    pub create: bool,
    /// Refuse a symlink anywhere on the way (`RESOLVE_NO_SYMLINKS`) instead of following it
    /// inside the root: for a target that must be exactly where it is named.
    pub no_symlinks: bool,
}

/// One step of the plan.
#[derive(Debug)]
pub enum MountOp {
    /// A fresh filesystem (proc, tmpfs, sysfs, devpts, mqueue). When `rbind_fallback` is set and
    /// the kernel refuses the mount (sysfs without an own network namespace in a user
    /// namespace), that host path is bound read-only instead.
    Fs {
        target: Target,
        fstype: CString,
        flags: libc::c_ulong,
        data: Option<CString>,
        rbind_fallback: Option<CString>,
    },
    /// A host path bound onto the target (volumes, device nodes, hydra's binary).
    Bind {
        target: Target,
        source: CString,
        read_only: bool,
        /// A device node: keeps the host mount's dev flag; everything else is bound nodev.
        device: bool,
        /// Bound nosuid too.
        nosuid: bool,
    },
    /// Hidden behind /dev/null (files) or an empty read-only tmpfs (directories).
    Mask { target: Target },
    /// Bound over itself read-only.
    ReadOnly { target: Target },
    /// A symlink `name` in the directory `dir` pointing at `link`.
    Symlink {
        dir: Target,
        name: CString,
        link: CString,
    },
}

impl MountOp {
    /// What the step does, for an error line: "mounting proc on /proc".
    pub fn describe(&self) -> String {
        match self {
            MountOp::Fs { target, fstype, .. } => format!(
                "mounting {} on {}",
                fstype.to_string_lossy(),
                target.display
            ),
            MountOp::Bind { target, source, .. } => {
                format!("binding {} on {}", source.to_string_lossy(), target.display)
            }
            MountOp::Mask { target } => format!("masking {}", target.display),
            MountOp::ReadOnly { target } => format!("making {} read-only", target.display),
            MountOp::Symlink { dir, name, .. } => {
                format!("creating {}/{}", dir.display, name.to_string_lossy())
            }
        }
    }
}

/// Everything the child mounts, in order.
#[derive(Debug)]
pub struct MountPlan {
    /// Host directory the private tmpfs is mounted on (inside the child's mount namespace only).
    pub layer_dir: CString,
    pub upper: CString,
    pub work: CString,
    /// Where the overlay is mounted and from where `pivot_root` happens.
    pub root: CString,
    /// Overlay options: lowerdir, upperdir, workdir.
    pub overlay_data: CString,
    pub ops: Vec<MountOp>,
    /// Remount `/` read-only after pivot_root.
    pub read_only_root: bool,
}

/// The cgroup hierarchies a process sees at /sys/fs/cgroup, read-only, rooted at its own cgroup.
#[derive(Debug, Clone, PartialEq)]
pub enum CgroupView {
    /// One mount per v1 hierarchy: its controllers as mount options (`memory`, `cpu,cpuacct`).
    V1(Vec<String>),
    /// The unified hierarchy.
    V2,
}

/// What shapes the plan besides the rootfs.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub read_only_root: bool,
    /// A user namespace is in use: devpts cannot take gid=5 unless it is mapped.
    pub rootless: bool,
    /// A writable tmpfs on /tmp (the strict level's writable layer over a read-only root).
    pub tmp_tmpfs: bool,
    pub volumes: Vec<Volume>,
    /// Mount the process's cgroups at /sys/fs/cgroup (only when it has a cgroup).
    pub cgroup_view: Option<CgroupView>,
    /// hydra's own binary (a host path), bound read-only, nosuid and nodev at `HYDRA_BINARY`.
    pub hydra_binary: Option<PathBuf>,
}

/// Where a process given IPC objects finds hydra's own binary (`hydra ipc send ...`).
pub const HYDRA_BINARY: &str = "/usr/local/bin/hydra";

fn cstring(text: &str) -> Result<CString, PlanError> {
    CString::new(text).map_err(|_| PlanError::Nul(text.to_string()))
}

/// Normalises an absolute container path into its components, dropping `.` and empty parts and
/// resolving `..` lexically (the kernel resolves the rest inside the root).
fn components(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts
}

impl Target {
    fn new(path: &str, kind: Kind, create: bool) -> Result<Self, PlanError> {
        let parts = components(path);
        let rel = if parts.is_empty() {
            ".".to_string()
        } else {
            parts.join("/")
        };
        let mut steps = Vec::with_capacity(parts.len());
        for i in 0..parts.len() {
            let parent = if i == 0 {
                ".".to_string()
            } else {
                parts[..i].join("/")
            };
            steps.push((cstring(&parent)?, cstring(parts[i])?));
        }
        Ok(Target {
            display: format!("/{rel}").replace("/.", "/"),
            rel: cstring(&rel)?,
            steps,
            kind,
            create,
            no_symlinks: false,
        })
    }

    fn dir(path: &str) -> Result<Self, PlanError> {
        Self::new(path, Kind::Dir, true)
    }

    /// A target that is skipped when it does not exist (masked and read-only paths).
    fn optional(path: &str) -> Result<Self, PlanError> {
        Self::new(path, Kind::Dir, false)
    }
}

/// Checks the rootfs and returns its canonical path.
pub fn check_rootfs(rootfs: &Path) -> Result<PathBuf, PlanError> {
    let meta = std::fs::metadata(rootfs).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PlanError::RootfsMissing(rootfs.to_path_buf()),
        _ => PlanError::Io {
            path: rootfs.to_path_buf(),
            source: e,
        },
    })?;
    if !meta.is_dir() {
        return Err(PlanError::RootfsNotDir(rootfs.to_path_buf()));
    }
    let canonical = rootfs.canonicalize().map_err(|e| PlanError::Io {
        path: rootfs.to_path_buf(),
        source: e,
    })?;
    let text = canonical.to_string_lossy();
    if text.contains(',') || text.contains(':') || text.contains('\\') {
        return Err(PlanError::RootfsPathChars(canonical));
    }
    Ok(canonical)
}

fn fs(
    path: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<MountOp, PlanError> {
    Ok(MountOp::Fs {
        target: Target::dir(path)?,
        fstype: cstring(fstype)?,
        flags,
        data: data.map(cstring).transpose()?,
        rbind_fallback: None,
    })
}

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

fn proc_ops(ops: &mut Vec<MountOp>) -> Result<(), PlanError> {
    ops.push(fs("/proc", "proc", NOSUID | NODEV | NOEXEC, None)?);
    for path in MASKED.iter().filter(|p| p.starts_with("/proc/")) {
        ops.push(MountOp::Mask {
            target: Target::optional(path)?,
        });
    }
    for path in READ_ONLY {
        ops.push(MountOp::ReadOnly {
            target: Target::optional(path)?,
        });
    }
    Ok(())
}

fn dev_ops(ops: &mut Vec<MountOp>, rootless: bool) -> Result<(), PlanError> {
    ops.push(fs(
        "/dev",
        "tmpfs",
        NOSUID | NODEV | NOEXEC,
        Some("mode=755,size=65536k"),
    )?);
    for dev in DEVICES {
        ops.push(MountOp::Bind {
            target: Target::new(&format!("/dev/{dev}"), Kind::File, true)?,
            source: cstring(&format!("/dev/{dev}"))?,
            read_only: false,
            device: true,
            nosuid: false,
        });
    }
    // gid=5 (tty) only exists inside when ids are mapped beyond the single rootless one.
    let pts_data = if rootless {
        "newinstance,ptmxmode=0666,mode=0620"
    } else {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    };
    ops.push(fs("/dev/pts", "devpts", NOSUID | NOEXEC, Some(pts_data))?);
    for (name, link) in DEV_SYMLINKS {
        ops.push(MountOp::Symlink {
            dir: Target::dir("/dev")?,
            name: cstring(name)?,
            link: cstring(link)?,
        });
    }
    ops.push(fs(
        "/dev/shm",
        "tmpfs",
        NOSUID | NODEV | NOEXEC,
        Some("mode=1777,size=65536k"),
    )?);
    ops.push(fs("/dev/mqueue", "mqueue", NOSUID | NODEV | NOEXEC, None)?);
    Ok(())
}

fn sys_ops(ops: &mut Vec<MountOp>) -> Result<(), PlanError> {
    ops.push(MountOp::Fs {
        target: Target::dir("/sys")?,
        fstype: cstring("sysfs")?,
        flags: NOSUID | NODEV | NOEXEC | libc::MS_RDONLY,
        data: None,
        rbind_fallback: Some(cstring("/sys")?),
    });
    for path in MASKED.iter().filter(|p| p.starts_with("/sys/")) {
        ops.push(MountOp::Mask {
            target: Target::optional(path)?,
        });
    }
    Ok(())
}

fn cgroup_ops(ops: &mut Vec<MountOp>, view: &CgroupView, rootless: bool) -> Result<(), PlanError> {
    const FLAGS: libc::c_ulong = libc::MS_RDONLY | NOSUID | NODEV | NOEXEC;
    match view {
        CgroupView::V2 => ops.push(fs("/sys/fs/cgroup", "cgroup2", FLAGS, None)?),
        // cgroup v1 cannot be mounted inside a user namespace.
        CgroupView::V1(_) if rootless => {}
        CgroupView::V1(hierarchies) => {
            ops.push(fs(
                "/sys/fs/cgroup",
                "tmpfs",
                NOSUID | NODEV | NOEXEC,
                Some("mode=755"),
            )?);
            for h in hierarchies {
                ops.push(MountOp::Fs {
                    target: Target::dir(&format!("/sys/fs/cgroup/{h}"))?,
                    fstype: cstring("cgroup")?,
                    flags: FLAGS,
                    data: Some(cstring(h)?),
                    rbind_fallback: None,
                });
            }
            ops.push(MountOp::ReadOnly {
                target: Target::optional("/sys/fs/cgroup")?,
            });
        }
    }
    Ok(())
}

fn volume_ops(ops: &mut Vec<MountOp>, volumes: &[Volume]) -> Result<(), PlanError> {
    for volume in volumes {
        let parts = components(&volume.target);
        if parts.is_empty() || parts[0] == "proc" {
            return Err(PlanError::VolumeTarget(volume.target.clone()));
        }
        let meta = std::fs::metadata(&volume.source)
            .map_err(|_| PlanError::VolumeSource(volume.source.clone()))?;
        let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
        ops.push(MountOp::Bind {
            target: Target::new(&volume.target, kind, true)?,
            source: cstring(&volume.source.to_string_lossy())?,
            read_only: volume.read_only,
            device: false,
            nosuid: false,
        });
    }
    Ok(())
}

/// hydra's binary at `HYDRA_BINARY`: read-only, so nothing inside can overwrite the host's
/// binary through it (runc CVE-2019-5736), nosuid and nodev. The target is created in the
/// writable layer when the image lacks it, and must not be reached through a symlink (which
/// could aim the bind at another of the image's files, /bin/sh say).
fn hydra_binary_op(binary: &Path) -> Result<MountOp, PlanError> {
    let mut target = Target::new(HYDRA_BINARY, Kind::File, true)?;
    target.no_symlinks = true;
    Ok(MountOp::Bind {
        target,
        source: cstring(&binary.to_string_lossy())?,
        read_only: true,
        device: false,
        nosuid: true,
    })
}

/// Builds the plan for a rootfs (already checked) and a private state directory.
pub fn build(rootfs: &Path, layer_dir: &Path, opts: &PlanOptions) -> Result<MountPlan, PlanError> {
    let path = |p: &Path| cstring(&p.to_string_lossy());
    let upper = layer_dir.join("upper");
    let work = layer_dir.join("work");
    let root = layer_dir.join("root");
    let overlay_data = format!(
        "lowerdir={},upperdir={},workdir={}",
        rootfs.display(),
        upper.display(),
        work.display()
    );
    let mut ops = Vec::with_capacity(48);
    proc_ops(&mut ops)?;
    dev_ops(&mut ops, opts.rootless)?;
    sys_ops(&mut ops)?;
    if let Some(view) = &opts.cgroup_view {
        cgroup_ops(&mut ops, view, opts.rootless)?;
    }
    if opts.tmp_tmpfs {
        ops.push(fs("/tmp", "tmpfs", NOSUID | NODEV, Some("mode=1777"))?);
    }
    // Before the volumes: a volume over /usr/local/bin hides it rather than have hydra create
    // a file in the volume's host directory.
    if let Some(binary) = &opts.hydra_binary {
        ops.push(hydra_binary_op(binary)?);
    }
    volume_ops(&mut ops, &opts.volumes)?;
    Ok(MountPlan {
        layer_dir: path(layer_dir)?,
        upper: path(&upper)?,
        work: path(&work)?,
        root: path(&root)?,
        overlay_data: cstring(&overlay_data)?,
        ops,
        read_only_root: opts.read_only_root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_relative_and_lexically_clean() {
        let t = Target::dir("/dev/../etc/./x/").unwrap();
        assert_eq!(t.rel.to_str().unwrap(), "etc/x");
        assert_eq!(t.display, "/etc/x");
        let steps: Vec<(String, String)> = t
            .steps
            .iter()
            .map(|(p, n)| (p.to_string_lossy().into(), n.to_string_lossy().into()))
            .collect();
        assert_eq!(
            steps,
            vec![
                (".".to_string(), "etc".to_string()),
                ("etc".to_string(), "x".to_string())
            ]
        );
    }

    #[test]
    fn plan_covers_the_docker_paths() {
        let plan = build(Path::new("/r"), Path::new("/s"), &PlanOptions::default()).unwrap();
        let described: Vec<String> = plan.ops.iter().map(MountOp::describe).collect();
        for expected in [
            "mounting proc on /proc",
            "masking /proc/kcore",
            "making /proc/sys read-only",
            "mounting tmpfs on /dev",
            "binding /dev/null on /dev/null",
            "mounting devpts on /dev/pts",
            "mounting mqueue on /dev/mqueue",
            "mounting sysfs on /sys",
            "masking /sys/firmware",
        ] {
            assert!(described.iter().any(|d| d == expected), "{expected}");
        }
        assert_eq!(
            plan.overlay_data.to_str().unwrap(),
            "lowerdir=/r,upperdir=/s/upper,workdir=/s/work"
        );
    }

    #[test]
    fn hydra_binary_is_bound_read_only_nosuid_at_its_place() {
        let opts = PlanOptions {
            hydra_binary: Some("/opt/hydra/bin/hydra".into()),
            ..Default::default()
        };
        let plan = build(Path::new("/r"), Path::new("/s"), &opts).unwrap();
        let op = plan
            .ops
            .iter()
            .find(|op| op.describe() == "binding /opt/hydra/bin/hydra on /usr/local/bin/hydra")
            .expect("the binary's bind");
        let MountOp::Bind {
            target,
            read_only,
            device,
            nosuid,
            ..
        } = op
        else {
            panic!("not a bind: {op:?}");
        };
        assert!(*read_only && *nosuid && !*device);
        assert!(target.create && target.no_symlinks && target.kind == Kind::File);
        let none = build(Path::new("/r"), Path::new("/s"), &PlanOptions::default()).unwrap();
        assert!(!none
            .ops
            .iter()
            .any(|op| op.describe().ends_with(HYDRA_BINARY)));
    }

    #[test]
    fn volumes_cannot_cover_root_or_proc() {
        for target in ["/", "/proc", "/proc/sys", "/x/../proc"] {
            let opts = PlanOptions {
                volumes: vec![Volume {
                    source: "/tmp".into(),
                    target: target.into(),
                    read_only: false,
                }],
                ..Default::default()
            };
            assert!(
                matches!(
                    build(Path::new("/r"), Path::new("/s"), &opts),
                    Err(PlanError::VolumeTarget(_))
                ),
                "{target}"
            );
        }
    }
}

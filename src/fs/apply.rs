//! Child side of the mount plan: builds the new root and pivots into it. Runs between clone and
//! exec, so it walks the prepared plan and allocates nothing.

use std::ffi::CStr;
use std::os::fd::RawFd;

use nix::errno::Errno;

use super::plan::{Kind, MountOp, MountPlan, Target};
use super::syscalls::{self as sys, FdPath};
use crate::process::stage::{Stage, StepError};

const PATH_FLAGS: u64 = (libc::O_PATH | libc::O_CLOEXEC) as u64;
const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// How `target` is resolved inside the root.
fn resolve(target: &Target) -> u64 {
    if target.no_symlinks {
        IN_ROOT | libc::RESOLVE_NO_SYMLINKS
    } else {
        IN_ROOT
    }
}
const CLONE_FLAGS: libc::c_uint = sys::OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;

fn step(stage: Stage) -> impl Fn(Errno) -> StepError {
    move |errno| StepError::new(stage, errno)
}

/// Opens `target` inside the root; creates it first when asked to. `Ok(None)`: it does not
/// exist and is optional.
fn open_target(root: RawFd, target: &Target) -> Result<Option<RawFd>, Errno> {
    match sys::openat2(root, &target.rel, PATH_FLAGS, resolve(target)) {
        Ok(fd) => return Ok(Some(fd)),
        Err(Errno::ENOENT) if !target.create => return Ok(None),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let last = target.steps.len().saturating_sub(1);
    // Usually only the last component is missing (/dev/null in the fresh /dev): create it in
    // its parent, and walk from the top only when the parent is missing too.
    let first = match create_step(root, target, last) {
        Err(Errno::ENOENT) => 0,
        other => {
            other?;
            last + 1
        }
    };
    for i in first..target.steps.len() {
        create_step(root, target, i)?;
    }
    sys::openat2(root, &target.rel, PATH_FLAGS, resolve(target)).map(Some)
}

/// Creates component `i` of `target` in its parent (a file for the last one of a file target).
fn create_step(root: RawFd, target: &Target, i: usize) -> Result<(), Errno> {
    let Some((parent, name)) = target.steps.get(i) else {
        return Ok(());
    };
    let dir = sys::openat2(
        root,
        parent,
        PATH_FLAGS | libc::O_DIRECTORY as u64,
        resolve(target),
    )?;
    let made = if i + 1 == target.steps.len() && target.kind == Kind::File {
        sys::touch_at(dir, name)
    } else {
        sys::mkdirat(dir, name, 0o755)
    };
    sys::close(dir);
    made
}

/// Clones the mount tree at `dirfd`/`path`, sets `attrs` (MOUNT_ATTR_*) on it, and attaches it
/// on `onto`.
fn bind_tree(
    dirfd: RawFd,
    path: &CStr,
    recursive: bool,
    attrs: u64,
    onto: RawFd,
) -> Result<(), Errno> {
    let mut flags = CLONE_FLAGS;
    if recursive {
        flags |= sys::AT_RECURSIVE;
    }
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    let tree = sys::open_tree(dirfd, path, flags)?;
    let result = (|| {
        if attrs != 0 {
            sys::set_tree_attr(tree, attrs)?;
        }
        sys::move_mount_fd(tree, onto)
    })();
    sys::close(tree);
    result
}

fn mount_fs(
    fd: RawFd,
    fstype: &CStr,
    flags: libc::c_ulong,
    data: Option<&CStr>,
    rbind_fallback: Option<&CStr>,
) -> Result<(), Errno> {
    let target = FdPath::new(fd);
    match sys::mount(fstype, target.as_cstr(), Some(fstype), flags, data) {
        Err(Errno::EPERM | Errno::EACCES) if rbind_fallback.is_some() => {
            let source = rbind_fallback.unwrap_or(c"/");
            bind_tree(libc::AT_FDCWD, source, true, sys::MOUNT_ATTR_RDONLY, fd)
        }
        other => other,
    }
}

fn mask(fd: RawFd, devnull: RawFd) -> Result<(), Errno> {
    let (kind, _) = sys::file_type(fd)?;
    if kind == libc::S_IFDIR {
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        sys::mount(
            c"tmpfs",
            FdPath::new(fd).as_cstr(),
            Some(c"tmpfs"),
            flags,
            Some(c"mode=755"),
        )
    } else {
        bind_tree(devnull, c"", false, 0, fd)
    }
}

fn run_op(root: RawFd, devnull: RawFd, op: &MountOp) -> Result<(), Errno> {
    let target = match op {
        MountOp::Fs { target, .. }
        | MountOp::Bind { target, .. }
        | MountOp::Mask { target }
        | MountOp::ReadOnly { target } => target,
        MountOp::Symlink { dir, .. } => dir,
    };
    let Some(fd) = open_target(root, target)? else {
        return Ok(());
    };
    let result = match op {
        MountOp::Fs {
            fstype,
            flags,
            data,
            rbind_fallback,
            ..
        } => mount_fs(
            fd,
            fstype,
            *flags,
            data.as_deref(),
            rbind_fallback.as_deref(),
        ),
        MountOp::Bind {
            source,
            read_only,
            device,
            nosuid,
            ..
        } => {
            // Volumes are nodev: a device node created in one must not open (device nodes
            // are the only binds that keep their dev flag).
            let mut attrs = if *device { 0 } else { sys::MOUNT_ATTR_NODEV };
            if *read_only {
                attrs |= sys::MOUNT_ATTR_RDONLY;
            }
            if *nosuid {
                attrs |= sys::MOUNT_ATTR_NOSUID;
            }
            bind_tree(libc::AT_FDCWD, source, true, attrs, fd)
        }
        MountOp::Mask { .. } => mask(fd, devnull),
        MountOp::ReadOnly { .. } => bind_tree(fd, c"", true, sys::MOUNT_ATTR_RDONLY, fd),
        MountOp::Symlink { name, link, .. } => sys::symlink_at(link, fd, name),
    };
    sys::close(fd);
    result
}

/// Opens the host's /dev/null for masking and checks it really is the null device (1:3), so a
/// swapped node cannot mask with something else (runc CVE-2025-31133).
fn open_devnull() -> Result<RawFd, Errno> {
    let fd = sys::openat2(libc::AT_FDCWD, c"/dev/null", PATH_FLAGS, 0)?;
    let (kind, rdev) = sys::file_type(fd)?;
    if kind != libc::S_IFCHR || rdev != libc::makedev(1, 3) {
        sys::close(fd);
        return Err(Errno::ENODEV);
    }
    Ok(fd)
}

/// Builds the private root (tmpfs + overlay), runs every plan step, pivots into it and detaches
/// the host's root. Afterwards the calling process sees only its own filesystem.
pub fn enter_root(plan: &MountPlan) -> Result<(), StepError> {
    let private = libc::MS_REC | libc::MS_PRIVATE;
    sys::mount(c"none", c"/", None, private, None).map_err(step(Stage::MakePrivate))?;
    let layer_flags = libc::MS_NOSUID | libc::MS_NODEV;
    sys::mount(
        c"tmpfs",
        &plan.layer_dir,
        Some(c"tmpfs"),
        layer_flags,
        Some(c"mode=700"),
    )
    .map_err(step(Stage::LayerTmpfs))?;
    for dir in [&plan.upper, &plan.work, &plan.root] {
        sys::mkdirat(libc::AT_FDCWD, dir, 0o755).map_err(step(Stage::LayerDirs))?;
    }
    // nodev: a device node in the image, or one the process makes, never opens from the root.
    sys::mount(
        c"overlay",
        &plan.root,
        Some(c"overlay"),
        libc::MS_NODEV,
        Some(&plan.overlay_data),
    )
    .map_err(step(Stage::Overlay))?;
    let root = sys::openat2(
        libc::AT_FDCWD,
        &plan.root,
        PATH_FLAGS | libc::O_DIRECTORY as u64,
        0,
    )
    .map_err(step(Stage::OpenRoot))?;
    let devnull = open_devnull().map_err(step(Stage::DevNull))?;
    for (i, op) in plan.ops.iter().enumerate() {
        run_op(root, devnull, op).map_err(|e| StepError::at(Stage::Mount, i, e))?;
    }
    sys::close(devnull);
    pivot(root)?;
    sys::close(root);
    if plan.read_only_root {
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        sys::mount(c"none", c"/", None, flags, None).map_err(step(Stage::ReadOnlyRoot))?;
    }
    Ok(())
}

/// pivot_root(".", ".") then a lazy unmount of the old root: the old root is stacked under the
/// new one and detached, so no path leads back to the host (runc's approach).
fn pivot(root: RawFd) -> Result<(), StepError> {
    // SAFETY: fchdir on an fd we own.
    if unsafe { libc::fchdir(root) } < 0 {
        return Err(StepError::new(Stage::PivotRoot, Errno::last()));
    }
    // SAFETY: both arguments are NUL-terminated strings.
    if unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } < 0 {
        return Err(StepError::new(Stage::PivotRoot, Errno::last()));
    }
    // SAFETY: umount2 of the old root stacked at ".".
    if unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) } < 0 {
        return Err(StepError::new(Stage::DetachOldRoot, Errno::last()));
    }
    // SAFETY: chdir to a constant path.
    if unsafe { libc::chdir(c"/".as_ptr()) } < 0 {
        return Err(StepError::new(Stage::DetachOldRoot, Errno::last()));
    }
    Ok(())
}

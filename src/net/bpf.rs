//! The few bpf(2) commands the socket redirect needs (create and fill a map, load a program,
//! link it to a cgroup), and a small assembler for the programs, which are a few dozen
//! instructions each. No BPF compiler is needed to build hydra, and no object file is parsed:
//! the programs are written here, instruction by instruction, and the kernel's verifier checks
//! them at load time like any other.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BpfError {
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The verifier refused a program: its last words.
    #[error("the kernel refused the {name} program: {errno}: {log}")]
    Refused {
        name: &'static str,
        errno: io::Error,
        log: String,
    },
}

fn sys(what: &'static str) -> impl FnOnce(io::Error) -> BpfError {
    move |source| BpfError::Sys { what, source }
}

// ---- instructions ---------------------------------------------------------------------------

/// A register: r0 (return value), r1–r5 (arguments, clobbered by calls), r6–r9 (kept across
/// calls), r10 (the read-only frame pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
pub const R10: Reg = Reg(10);

/// Access sizes.
#[derive(Debug, Clone, Copy)]
pub enum Size {
    W = 0x00,
    Dw = 0x18,
}

/// ALU operations.
#[derive(Debug, Clone, Copy)]
pub enum Alu {
    Add = 0x00,
    And = 0x50,
    Lsh = 0x60,
    Mod = 0x90,
}

/// Jump conditions.
#[derive(Debug, Clone, Copy)]
pub enum Cond {
    Eq = 0x10,
    Ne = 0x50,
}

/// Helper functions (`enum bpf_func_id`).
#[derive(Debug, Clone, Copy)]
pub enum Helper {
    MapLookupElem = 1,
    MapUpdateElem = 2,
    GetSocketCookie = 46,
    Setsockopt = 49,
    GetNetnsCookie = 122,
}

const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU32: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
const K: u8 = 0x00;
const X: u8 = 0x08;
const MOV: u8 = 0xb0;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
/// `src_reg` of a 64-bit immediate load that names a map by its fd.
const PSEUDO_MAP_FD: u8 = 1;

/// One instruction as the kernel reads it (`struct bpf_insn`, little-endian bit fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst: dst.0,
            src: src.0,
            off,
            imm,
        }
    }

    pub fn bytes(&self) -> [u8; 8] {
        let mut b = [0; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// A program being written: instructions, with jumps to named labels resolved at the end.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<(&'static str, usize)>,
    jumps: Vec<(usize, &'static str)>,
}

impl Asm {
    fn push(&mut self, i: Insn) -> &mut Self {
        self.insns.push(i);
        self
    }

    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(Insn::new(ALU64 | MOV | X, dst, src, 0, 0))
    }

    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(Insn::new(ALU64 | MOV | K, dst, R0, 0, imm))
    }

    /// `dst op= imm`, 64-bit.
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Self {
        self.push(Insn::new(ALU64 | op as u8 | K, dst, R0, 0, imm))
    }

    /// `dst op= src`, 64-bit.
    pub fn alu(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Self {
        self.push(Insn::new(ALU64 | op as u8 | X, dst, src, 0, 0))
    }

    /// `dst op= src`, 32-bit (the upper half becomes zero).
    pub fn alu32(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Self {
        self.push(Insn::new(ALU32 | op as u8 | X, dst, src, 0, 0))
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(Insn::new(LDX | MEM | size as u8, dst, src, off, 0))
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(Insn::new(STX | MEM | size as u8, dst, src, off, 0))
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(Insn::new(ST | MEM | size as u8, dst, R0, off, imm))
    }

    /// `dst = imm` for a full 64-bit value (two instruction slots).
    pub fn load_u64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.push(Insn::new(
            LD | IMM | Size::Dw as u8,
            dst,
            R0,
            0,
            imm as u32 as i32,
        ));
        self.push(Insn::new(0, R0, R0, 0, (imm >> 32) as u32 as i32))
    }

    /// `dst = &map` (two instruction slots; the kernel swaps the fd for the map).
    pub fn load_map(&mut self, dst: Reg, map: RawFd) -> &mut Self {
        self.push(Insn::new(
            LD | IMM | Size::Dw as u8,
            dst,
            Reg(PSEUDO_MAP_FD),
            0,
            map,
        ));
        self.push(Insn::new(0, R0, R0, 0, 0))
    }

    /// `if dst cond imm goto label`.
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, label: &'static str) -> &mut Self {
        self.jumps.push((self.insns.len(), label));
        self.push(Insn::new(JMP | cond as u8 | K, dst, R0, 0, imm))
    }

    /// `if dst cond src goto label`.
    pub fn jump(&mut self, cond: Cond, dst: Reg, src: Reg, label: &'static str) -> &mut Self {
        self.jumps.push((self.insns.len(), label));
        self.push(Insn::new(JMP | cond as u8 | X, dst, src, 0, 0))
    }

    /// `dst = r10 + off`: the address of a stack slot.
    pub fn frame_ptr(&mut self, dst: Reg, off: i16) -> &mut Self {
        self.mov(dst, R10).alu_imm(Alu::Add, dst, off.into())
    }

    /// `r0 = bpf_map_lookup_elem(map, fp + key)`.
    pub fn lookup(&mut self, map: RawFd, key: i16) -> &mut Self {
        self.load_map(R1, map)
            .frame_ptr(R2, key)
            .call(Helper::MapLookupElem)
    }

    /// `bpf_map_update_elem(map, fp + key, fp + value, BPF_ANY)`.
    pub fn update(&mut self, map: RawFd, key: i16, value: i16) -> &mut Self {
        self.load_map(R1, map)
            .frame_ptr(R2, key)
            .frame_ptr(R3, value)
            .mov_imm(R4, 0)
            .call(Helper::MapUpdateElem)
    }

    pub fn call(&mut self, helper: Helper) -> &mut Self {
        self.push(Insn::new(JMP | CALL, R0, R0, 0, helper as i32))
    }

    pub fn exit(&mut self) -> &mut Self {
        self.push(Insn::new(JMP | EXIT, R0, R0, 0, 0))
    }

    /// The next instruction is `name`'s target.
    pub fn label(&mut self, name: &'static str) -> &mut Self {
        self.labels.push((name, self.insns.len()));
        self
    }

    /// The instructions, every jump resolved.
    pub fn finish(&self) -> Result<Vec<Insn>, AsmError> {
        let mut out = self.insns.clone();
        for &(at, name) in &self.jumps {
            let target = self
                .labels
                .iter()
                .find(|(n, _)| *n == name)
                .map(|&(_, t)| t)
                .ok_or(AsmError(name))?;
            out[at].off = (target as i64 - at as i64 - 1) as i16;
        }
        Ok(out)
    }
}

/// A jump to a label the program never placed (a fault of the program's text, found by any test
/// that assembles it).
#[derive(Debug, Error)]
#[error("a BPF program jumps to a label it never places: {0}")]
pub struct AsmError(pub &'static str);

// ---- the system calls -----------------------------------------------------------------------

const MAP_CREATE: libc::c_long = 0;
const MAP_UPDATE_ELEM: libc::c_long = 2;
const PROG_LOAD: libc::c_long = 5;
const LINK_CREATE: libc::c_long = 28;
/// `sizeof(union bpf_attr)` of the fields used here; the kernel zero-checks the rest.
const ATTR: usize = 128;

/// `union bpf_attr` as bytes, fields written at their offsets.
struct Attr([u8; ATTR]);

impl Attr {
    fn new() -> Attr {
        Attr([0; ATTR])
    }

    fn u32(mut self, off: usize, v: u32) -> Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(mut self, off: usize, v: u64) -> Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn name(mut self, off: usize, name: &str) -> Attr {
        // BPF_OBJ_NAME_LEN is 16, NUL included.
        let n = name.len().min(15);
        self.0[off..off + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }

    fn call(&mut self, cmd: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: the attribute is a valid, zero-padded `union bpf_attr` prefix of ATTR bytes;
        // every pointer in it points at memory that outlives the call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, self.0.as_mut_ptr(), ATTR) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    fn fd(mut self, cmd: libc::c_long) -> io::Result<OwnedFd> {
        let fd = self.call(cmd)?;
        // SAFETY: the kernel returned a new file descriptor (close-on-exec) that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// Map types.
#[derive(Debug, Clone, Copy)]
pub enum MapType {
    Hash = 1,
    LruHash = 9,
}

/// Creates a map.
pub fn map_create(
    kind: MapType,
    key: usize,
    value: usize,
    entries: usize,
    name: &str,
) -> Result<OwnedFd, BpfError> {
    Attr::new()
        .u32(0, kind as u32)
        .u32(4, key as u32)
        .u32(8, value as u32)
        .u32(12, entries as u32)
        .name(28, name)
        .fd(MAP_CREATE)
        .map_err(sys("creating a BPF map"))
}

/// Sets `key` to `value` in `map` (the sizes are the map's).
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
    Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, key.as_ptr() as u64)
        .u64(16, value.as_ptr() as u64)
        .call(MAP_UPDATE_ELEM)
        .map(|_| ())
        .map_err(sys("filling a BPF map"))
}

/// Program types.
#[derive(Debug, Clone, Copy)]
pub enum ProgType {
    CgroupSockAddr = 18,
}

/// Attach points.
#[derive(Debug, Clone, Copy)]
pub enum AttachType {
    CgroupInet4Connect = 10,
    CgroupInet4Getpeername = 29,
    CgroupInet4Getsockname = 31,
}

/// The license the programs are offered under: the project's. The kernel takes any string for
/// a program that calls no GPL-only helper, as these do not.
const LICENSE: &str = "Apache-2.0";

/// Loads a program; a refusal carries the end of the verifier's log.
pub fn prog_load(
    kind: ProgType,
    attach: AttachType,
    insns: &[Insn],
    name: &'static str,
) -> Result<OwnedFd, BpfError> {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.bytes()).collect();
    let license = CString::new(LICENSE).map_err(|e| sys("the license")(io::Error::other(e)))?;
    let attr = |log: &mut [u8], level: u32| {
        Attr::new()
            .u32(0, kind as u32)
            .u32(4, insns.len() as u32)
            .u64(8, code.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, level)
            .u32(28, log.len() as u32)
            // No buffer at all without a log: the kernel refuses a pointer with no room.
            .u64(
                32,
                if log.is_empty() {
                    0
                } else {
                    log.as_mut_ptr() as u64
                },
            )
            .name(48, name)
            .u32(68, attach as u32)
    };
    match attr(&mut [], 0).fd(PROG_LOAD) {
        Ok(fd) => Ok(fd),
        Err(errno) => {
            // Once more with the verifier's log, to say why.
            let mut log = vec![0u8; 64 * 1024];
            let _ = attr(&mut log, 1).fd(PROG_LOAD);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            let log = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
            Err(BpfError::Refused { name, errno, log })
        }
    }
}

/// Links `prog` to the cgroup directory `cgroup` at `attach`; the program stays attached as long
/// as the returned link is open (it goes when the process holding it exits, however it exits).
pub fn link_cgroup(
    prog: &OwnedFd,
    cgroup: &OwnedFd,
    attach: AttachType,
) -> Result<OwnedFd, BpfError> {
    Attr::new()
        .u32(0, prog.as_raw_fd() as u32)
        .u32(4, cgroup.as_raw_fd() as u32)
        .u32(8, attach as u32)
        .fd(LINK_CREATE)
        .map_err(sys("linking a BPF program to the root cgroup"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_are_laid_out_as_the_kernel_reads_them() {
        let mut a = Asm::default();
        a.load(Size::W, R2, R6, 36)
            .jump_imm(Cond::Ne, R2, 6, "out")
            .load_u64(R3, 0x1122_3344_5566_7788)
            .label("out")
            .mov_imm(R0, 1)
            .exit();
        let bytes: Vec<[u8; 8]> = a
            .finish()
            .expect("labels")
            .iter()
            .map(|i| i.bytes())
            .collect();
        // ldxw r2, [r6+36]
        assert_eq!(bytes[0], [0x61, 0x62, 36, 0, 0, 0, 0, 0]);
        // jne r2, 6, +2 (over the two slots of the 64-bit load)
        assert_eq!(bytes[1], [0x55, 0x02, 2, 0, 6, 0, 0, 0]);
        // lddw r3, 0x1122334455667788
        assert_eq!(bytes[2], [0x18, 0x03, 0, 0, 0x88, 0x77, 0x66, 0x55]);
        assert_eq!(bytes[3], [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
        // mov r0, 1; exit
        assert_eq!(bytes[4], [0xb7, 0x00, 0, 0, 1, 0, 0, 0]);
        assert_eq!(bytes[5], [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_backward_jump_has_a_negative_offset() {
        let mut a = Asm::default();
        a.label("top")
            .mov_imm(R0, 0)
            .jump_imm(Cond::Eq, R0, 0, "top");
        assert_eq!(a.finish().expect("labels")[1].off, -2);
        let mut b = Asm::default();
        b.jump_imm(Cond::Eq, R0, 0, "nowhere");
        assert!(b.finish().is_err());
    }
}

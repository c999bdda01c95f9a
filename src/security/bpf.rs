//! A small seccomp-BPF compiler that emits a balanced decision tree over syscall numbers.
//! seccompiler (and a naive allow-list) emit a linear chain: for Docker's ~300 allowed calls
//! that is ~1500 instructions, which the kernel walks for every syscall it cannot cache and
//! emulates once per syscall number when the filter is installed (≈0.5 ms here). A tree needs
//! ~2·log2(ranges) instructions per decision.

use std::collections::BTreeMap;

/// `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// BPF_LD | BPF_W | BPF_ABS (BPF_LD and BPF_W are 0).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JGE_K: u16 = 0x05 | 0x30;
const BPF_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// Offsets into `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// AUDIT_ARCH_X86_64.
pub const ARCH_X86_64: u32 = 0xc000_003e;
/// x32 syscalls on x86_64 carry this bit; they are never allowed.
const X32_BIT: u32 = 0x4000_0000;

/// What a filter answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u16),
}

impl Action {
    fn ret(self) -> u32 {
        match self {
            Action::Allow => RET_ALLOW,
            Action::Errno(e) => RET_ERRNO | u32::from(e),
        }
    }
}

/// The decision for one syscall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The same answer whatever the arguments.
    Always(Action),
    /// `then` when no bit of `mask` is set in the low 32 bits of argument `arg`, else `otherwise`.
    NoBits {
        arg: u8,
        mask: u32,
        then: Action,
        otherwise: Action,
    },
    /// `then` when argument `arg` equals one of `values` (32-bit values; high half zero).
    OneOf {
        arg: u8,
        values: Vec<u32>,
        then: Action,
        otherwise: Action,
    },
}

/// A whole filter: per-syscall rules and the answer for every other call.
#[derive(Debug, Clone)]
pub struct Policy {
    pub arch: u32,
    pub default: Action,
    pub rules: BTreeMap<u32, Rule>,
}

/// A run of syscall numbers `[start, end)` with one rule.
#[derive(Debug, Clone)]
struct Segment {
    start: u32,
    end: u32,
    rule: Rule,
}

/// Merges consecutive numbers with the same simple rule; gaps get the default.
fn segments(policy: &Policy) -> Vec<Segment> {
    let mut segs: Vec<Segment> = Vec::new();
    let mut push = |start: u32, end: u32, rule: Rule| {
        if let Some(last) = segs.last_mut() {
            let simple = matches!(rule, Rule::Always(_));
            if simple && last.end == start && last.rule == rule {
                last.end = end;
                return;
            }
        }
        segs.push(Segment { start, end, rule });
    };
    let mut next = 0u32;
    for (&nr, rule) in &policy.rules {
        if nr > next {
            push(next, nr, Rule::Always(policy.default));
        }
        push(nr, nr + 1, rule.clone());
        next = nr + 1;
    }
    push(next, X32_BIT, Rule::Always(policy.default));
    segs
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

fn ret(action: Action) -> Insn {
    stmt(BPF_RET_K, action.ret())
}

/// Code for one leaf (the syscall number is no longer needed once a leaf is reached).
fn leaf(rule: &Rule) -> Vec<Insn> {
    match rule {
        Rule::Always(a) => vec![ret(*a)],
        Rule::NoBits {
            arg,
            mask,
            then,
            otherwise,
        } => vec![
            stmt(BPF_LD_W_ABS, OFF_ARGS + 8 * u32::from(*arg)),
            jump(BPF_JSET_K, *mask, 1, 0),
            ret(*then),
            ret(*otherwise),
        ],
        Rule::OneOf {
            arg,
            values,
            then,
            otherwise,
        } => {
            let mut code = vec![
                stmt(BPF_LD_W_ABS, OFF_ARGS + 8 * u32::from(*arg) + 4),
                // The high half must be zero; otherwise jump past all comparisons.
                jump(BPF_JEQ_K, 0, 0, (values.len() + 1) as u8),
                stmt(BPF_LD_W_ABS, OFF_ARGS + 8 * u32::from(*arg)),
            ];
            for (i, v) in values.iter().enumerate() {
                // Match: jump to the `then` return after the last comparison.
                code.push(jump(BPF_JEQ_K, *v, (values.len() - i) as u8, 0));
            }
            code.push(ret(*otherwise));
            code.push(ret(*then));
            code
        }
    }
}

/// Binary search over segments: `nr >= boundary` goes right. Layout: test, left, right.
fn tree(segs: &[Segment]) -> Vec<Insn> {
    if segs.len() == 1 {
        return leaf(&segs[0].rule);
    }
    let mid = segs.len() / 2;
    let left = tree(&segs[..mid]);
    let right = tree(&segs[mid..]);
    let mut code = Vec::with_capacity(left.len() + right.len() + 2);
    if left.len() <= 255 {
        code.push(jump(BPF_JGE_K, segs[mid].start, left.len() as u8, 0));
    } else {
        // Too far for an 8-bit offset: fall through to a long jump over the left side.
        code.push(jump(BPF_JGE_K, segs[mid].start, 0, 1));
        code.push(stmt(BPF_JMP_JA, left.len() as u32));
    }
    code.extend(left);
    code.extend(right);
    code
}

/// Compiles the policy: check the architecture (kill on a foreign one, as a syscall number
/// means something else there), refuse x32 numbers, then the tree.
pub fn compile(policy: &Policy) -> Vec<Insn> {
    let mut code = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, policy.arch, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JGE_K, X32_BIT, 0, 1),
        ret(policy.default),
    ];
    code.extend(tree(&segments(policy)));
    code
}

#[cfg(test)]
pub mod interpreter {
    //! A reference interpreter for the instructions `compile` emits, to check every syscall.
    use super::*;

    pub fn run(code: &[Insn], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let insn = code[pc];
            pc += 1;
            match insn.code {
                BPF_LD_W_ABS => {
                    let k = insn.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                BPF_JMP_JA => pc += insn.k as usize,
                BPF_JEQ_K | BPF_JGE_K | BPF_JSET_K => {
                    let hit = match insn.code {
                        BPF_JEQ_K => acc == insn.k,
                        BPF_JGE_K => acc >= insn.k,
                        _ => acc & insn.k != 0,
                    };
                    pc += usize::from(if hit { insn.jt } else { insn.jf });
                }
                BPF_RET_K => return insn.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::interpreter::run;
    use super::*;

    fn policy() -> Policy {
        let mut rules = BTreeMap::new();
        for nr in [0, 1, 2, 3, 9, 10, 11, 60, 231, 300, 301, 302] {
            rules.insert(nr, Rule::Always(Action::Allow));
        }
        rules.insert(435, Rule::Always(Action::Errno(38)));
        rules.insert(
            56,
            Rule::NoBits {
                arg: 0,
                mask: 0x7e02_0080,
                then: Action::Allow,
                otherwise: Action::Errno(1),
            },
        );
        rules.insert(
            135,
            Rule::OneOf {
                arg: 0,
                values: vec![0, 8, 0x20000],
                then: Action::Allow,
                otherwise: Action::Errno(1),
            },
        );
        Policy {
            arch: ARCH_X86_64,
            default: Action::Errno(1),
            rules,
        }
    }

    #[test]
    fn every_number_gets_its_rule() {
        let p = policy();
        let code = compile(&p);
        for nr in 0..600u32 {
            let want = match p.rules.get(&nr) {
                Some(Rule::Always(a)) => a.ret(),
                Some(_) => continue,
                None => p.default.ret(),
            };
            assert_eq!(run(&code, nr, ARCH_X86_64, [0; 6]), want, "nr {nr}");
        }
    }

    #[test]
    fn argument_rules() {
        let code = compile(&policy());
        let clone = |flags| run(&code, 56, ARCH_X86_64, [flags, 0, 0, 0, 0, 0]);
        assert_eq!(clone(0x11), RET_ALLOW);
        assert_eq!(clone(0x1000_0000), RET_ERRNO | 1);
        let personality = |v| run(&code, 135, ARCH_X86_64, [v, 0, 0, 0, 0, 0]);
        assert_eq!(personality(8), RET_ALLOW);
        assert_eq!(personality(0x20000), RET_ALLOW);
        assert_eq!(personality(4), RET_ERRNO | 1);
        assert_eq!(personality(0x1_0000_0000), RET_ERRNO | 1);
    }

    #[test]
    fn foreign_arch_and_x32_are_refused() {
        let code = compile(&policy());
        assert_eq!(run(&code, 0, 0x4000_0003, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&code, X32_BIT | 1, ARCH_X86_64, [0; 6]), RET_ERRNO | 1);
    }

    #[test]
    fn large_trees_use_long_jumps_correctly() {
        // Alternate allow/deny so nothing merges: hundreds of segments, deep left subtrees.
        let mut rules = BTreeMap::new();
        for nr in (0..900u32).step_by(2) {
            rules.insert(nr, Rule::Always(Action::Allow));
        }
        let p = Policy {
            arch: ARCH_X86_64,
            default: Action::Errno(1),
            rules,
        };
        let code = compile(&p);
        for nr in 0..1000u32 {
            let want = if nr < 900 && nr % 2 == 0 {
                RET_ALLOW
            } else {
                RET_ERRNO | 1
            };
            assert_eq!(run(&code, nr, ARCH_X86_64, [0; 6]), want, "nr {nr}");
        }
    }
}

//! nf_tables transactions over a NETLINK_NETFILTER socket of hydra's own: a list of changes
//! framed by NFNL_MSG_BATCH_BEGIN … NFNL_MSG_BATCH_END (resource NFNL_SUBSYS_NFTABLES), which the
//! kernel applies all or nothing. Every change asks for an ACK and carries its own sequence
//! number, so a refusal names the change the kernel refused ("adding chain my-app-pre: File
//! exists"). The kernel processes a batch inside the `sendmsg` call, so once it returns every
//! answer is queued on the socket: they are read until the socket is empty.
//!
//! Also the two questions hydra asks nf_tables directly: does a table exist, and what do the
//! rules of a table count.

use std::io;

use netlink_sys::Socket;
use nix::errno::Errno;

use super::nfnetlink::{self, replies, request, text, Attributes, Header, Reply};
use super::nft_wire::{comment_of, uapi::*, Change};

/// An nf_tables message type: the subsystem in the high byte.
fn nft(kind: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | kind
}

/// An nf_tables request about family inet (hydra's table's family).
fn inet_request(kind: u16, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    request(
        Header {
            kind: nft(kind),
            flags,
            seq,
            family: NFPROTO_INET,
            res_id: 0,
        },
        attrs,
    )
}

const ACK: u16 = libc::NLM_F_ACK as u16;
const DUMP: u16 = libc::NLM_F_DUMP as u16;

/// The socket buffer for a transaction's answers: every ACK is one socket buffer of its own
/// (well under 2 KiB of accounted memory each), and a refusal echoes the refused message.
fn answers_room(changes: usize) -> usize {
    64 * 1024 + changes * 2048
}

/// A refused transaction: the change (or stage) the kernel refused, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub step: String,
    pub errno: Errno,
}

/// One rule's counter as the kernel reports it: the rule's chain and comment.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    pub chain: String,
    pub comment: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

/// A netlink socket talking to nf_tables, in the network namespace of the thread that opened it.
pub struct Session {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Session {
    pub fn open() -> io::Result<Session> {
        Ok(Session {
            socket: nfnetlink::socket()?,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Reads one datagram (waiting for it unless `dont_wait`) and hands its messages to `each`
    /// until it returns `Some`. `Ok(None)`: the datagram held no answer (or, not waiting,
    /// nothing was queued).
    fn read<T>(
        &mut self,
        dont_wait: bool,
        mut each: impl FnMut(Reply<'_>) -> Option<T>,
    ) -> io::Result<Option<Option<T>>> {
        let flags = if dont_wait { libc::MSG_DONTWAIT } else { 0 };
        let n = match self.socket.recv(&mut &mut self.buf[..], flags) {
            Ok(n) => n,
            Err(e) if dont_wait && e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(
            replies(&self.buf[..n.min(self.buf.len())]).find_map(&mut each),
        ))
    }

    /// Whether table `table` (family inet) exists: one NFT_MSG_GETTABLE.
    pub fn table_exists(&mut self, table: &str) -> io::Result<bool> {
        let seq = self.next_seq();
        let ask = inet_request(NFT_MSG_GETTABLE, ACK, seq, &text(NFTA_TABLE_NAME, table));
        self.socket.send(&ask, 0)?;
        // The table comes first, then the ACK; or only the error.
        let mut found = false;
        loop {
            let verdict = self.read(false, |r| {
                if r.seq != seq {
                    return None;
                }
                if r.kind == nft(NFT_MSG_NEWTABLE) {
                    found = true;
                }
                r.error().map(|(code, _)| code)
            })?;
            match verdict.flatten() {
                None => continue,
                Some(0) => return Ok(found),
                Some(libc::ENOENT) => return Ok(false),
                Some(code) => return Err(io::Error::from_raw_os_error(code)),
            }
        }
    }

    /// Applies `changes` to table `table` (family inet) as one transaction.
    pub fn apply(&mut self, table: &str, changes: &[Change]) -> Result<(), Refusal> {
        if changes.is_empty() {
            return Ok(());
        }
        let begin = self.next_seq();
        let batch = |kind, seq| {
            request(
                Header {
                    kind,
                    flags: 0,
                    seq,
                    family: libc::AF_UNSPEC as u8,
                    res_id: NFNL_SUBSYS_NFTABLES,
                },
                &[],
            )
        };
        let mut out = batch(NFNL_MSG_BATCH_BEGIN, begin);
        for change in changes {
            let (kind, flags, attrs) = change.encode(table);
            let seq = self.next_seq();
            out.extend(inet_request(kind, flags | ACK, seq, &attrs));
        }
        let end = self.next_seq();
        out.extend(batch(NFNL_MSG_BATCH_END, end));

        let stage = |step: &str, e: io::Error| Refusal {
            step: step.to_string(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        // Room for every answer (a per-socket setting; without CAP_NET_ADMIN the kernel refuses
        // the batch anyway, and says so).
        let room = answers_room(changes.len());
        let _ = nix::sys::socket::setsockopt(
            &self.socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &room,
        );
        self.socket
            .send(&out, 0)
            .map_err(|e| stage("sending the transaction", e))?;

        // (sequence number, error) of every answer; ACKs are error 0.
        let mut answers: Vec<(u32, i32)> = Vec::with_capacity(changes.len());
        loop {
            let read = self.read(true, |r| {
                if let Some((code, seq)) = r.error() {
                    answers.push((seq, code));
                }
                None::<()>
            });
            match read {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => return Err(stage("reading the kernel's answers", e)),
            }
        }
        verdict(begin, end, changes, &answers)
    }

    /// Every rule of `chains` in table `table` (family inet) that counts: its chain, comment and
    /// counter. Each chain is dumped alone (a whole table's dump takes many datagrams once many
    /// containers have rules, and any change to the ruleset between two of them spoils it). A
    /// dump the kernel marks interrupted (the ruleset changed under it: another container came
    /// or went) may miss or repeat rules, so it is taken again, as nft does.
    pub fn counters(&mut self, table: &str, chains: &[String]) -> io::Result<Vec<Counted>> {
        let mut out = Vec::new();
        for chain in chains {
            out.extend(self.chain_counters(table, chain)?);
        }
        Ok(out)
    }

    fn chain_counters(&mut self, table: &str, chain: &str) -> io::Result<Vec<Counted>> {
        let give_up = std::time::Instant::now() + DUMP_PATIENCE;
        while std::time::Instant::now() < give_up {
            if let Some(counted) = self.dump_counters(table, chain)? {
                return Ok(counted);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            format!("the rules of {table} {chain} kept changing while they were read"),
        ))
    }

    /// One dump of the rules' counters; `None` if the kernel marked it interrupted.
    fn dump_counters(&mut self, table: &str, chain: &str) -> io::Result<Option<Vec<Counted>>> {
        let seq = self.next_seq();
        let filter = [text(NFTA_RULE_TABLE, table), text(NFTA_RULE_CHAIN, chain)].concat();
        let ask = inet_request(NFT_MSG_GETRULE, DUMP, seq, &filter);
        self.socket.send(&ask, 0)?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let done = self.read(false, |r| {
                if r.seq != seq {
                    return None;
                }
                interrupted |= r.flags & NLM_F_DUMP_INTR != 0;
                if r.kind == libc::NLMSG_DONE as u16 {
                    return Some(Ok(()));
                }
                if let Some((code, _)) = r.error() {
                    return Some(match code {
                        0 | libc::ENOENT => Ok(()),
                        e => Err(io::Error::from_raw_os_error(e)),
                    });
                }
                if r.kind == nft(NFT_MSG_NEWRULE) {
                    out.extend(counted(r.attributes()));
                }
                None
            })?;
            if let Some(Some(result)) = done {
                return result.map(|()| (!interrupted).then_some(out));
            }
        }
    }
}

/// NLM_F_DUMP_INTR: the dump was inconsistent (the object list changed while it ran).
const NLM_F_DUMP_INTR: u16 = 0x10;
/// How long interrupted dumps are taken again before giving up (one takes well under a
/// millisecond; containers starting and stopping change the ruleset every few milliseconds at
/// most).
const DUMP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The outcome of a transaction from its answers: the first refusal in batch order, else
/// success once every change was acknowledged.
fn verdict(
    begin: u32,
    end: u32,
    changes: &[Change],
    answers: &[(u32, i32)],
) -> Result<(), Refusal> {
    let step = |seq: u32| -> String {
        match seq {
            s if s == begin => "starting the transaction".to_string(),
            s if s == end => "committing the transaction".to_string(),
            s => changes
                .get(s.wrapping_sub(begin).wrapping_sub(1) as usize)
                .map(|c| c.to_string())
                .unwrap_or_else(|| "an unknown step".to_string()),
        }
    };
    let order = |seq: u32| seq.wrapping_sub(begin);
    if let Some(&(seq, code)) = answers
        .iter()
        .filter(|(_, code)| *code != 0)
        .min_by_key(|(seq, _)| order(*seq))
    {
        return Err(Refusal {
            step: step(seq),
            errno: Errno::from_raw(code),
        });
    }
    let acked = |i: usize| {
        let seq = begin.wrapping_add(1).wrapping_add(i as u32);
        answers.iter().any(|(s, _)| *s == seq)
    };
    match (0..changes.len()).find(|&i| !acked(i)) {
        None => Ok(()),
        Some(i) => Err(Refusal {
            step: format!("{} (no answer from the kernel)", changes[i]),
            errno: Errno::EIO,
        }),
    }
}

/// The counters of one rule from a NFT_MSG_NEWRULE dump message.
fn counted(attrs: Attributes<'_>) -> Vec<Counted> {
    let chain = attrs
        .get(NFTA_RULE_CHAIN)
        .map(nfnetlink::as_text)
        .unwrap_or_default();
    let comment = attrs.get(NFTA_RULE_USERDATA).and_then(comment_of);
    let Some(exprs) = attrs.get(NFTA_RULE_EXPRESSIONS) else {
        return Vec::new();
    };
    Attributes(exprs)
        .filter(|(kind, _)| *kind == NFTA_LIST_ELEM)
        .filter_map(|(_, expr)| {
            let expr = Attributes(expr);
            let name = expr.get(NFTA_EXPR_NAME).map(nfnetlink::as_text)?;
            if name != "counter" {
                return None;
            }
            let data = Attributes(expr.get(NFTA_EXPR_DATA)?);
            Some(Counted {
                chain: chain.clone(),
                comment: comment.clone(),
                packets: data
                    .get(NFTA_COUNTER_PACKETS)
                    .and_then(nfnetlink::as_be64)
                    .unwrap_or(0),
                bytes: data
                    .get(NFTA_COUNTER_BYTES)
                    .and_then(nfnetlink::as_be64)
                    .unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::nfnetlink::{attr, be32, nest};

    fn changes() -> Vec<Change> {
        vec![
            Change::AddChain {
                name: "a-pre".into(),
                hook: None,
            },
            Change::AddChain {
                name: "a-post".into(),
                hook: None,
            },
        ]
    }

    #[test]
    fn every_change_must_be_acknowledged() {
        let c = changes();
        assert_eq!(verdict(10, 13, &c, &[(11, 0), (12, 0)]), Ok(()));
        let missing = verdict(10, 13, &c, &[(11, 0)]).unwrap_err();
        assert_eq!(missing.errno, Errno::EIO);
        assert!(
            missing.step.starts_with("adding chain a-post"),
            "{missing:?}"
        );
    }

    #[test]
    fn the_first_refused_change_is_named_and_stages_have_names_too() {
        let c = changes();
        let r = verdict(10, 13, &c, &[(12, libc::EEXIST), (11, libc::ENOENT)]).unwrap_err();
        assert_eq!(
            (r.step.as_str(), r.errno),
            ("adding chain a-pre", Errno::ENOENT)
        );
        let r = verdict(10, 13, &c, &[(10, libc::EPERM)]).unwrap_err();
        assert_eq!(r.step, "starting the transaction");
        // Sequence numbers may wrap within a batch.
        let r = verdict(u32::MAX, 2, &c, &[(0, 0), (1, libc::EBUSY)]).unwrap_err();
        assert_eq!(r.step, "adding chain a-post");
    }

    #[test]
    fn a_dumped_rule_gives_its_counter_with_chain_and_comment() {
        let counter = nest(
            NFTA_LIST_ELEM,
            &[
                text(NFTA_EXPR_NAME, "counter"),
                nest(
                    NFTA_EXPR_DATA,
                    &[
                        attr(NFTA_COUNTER_BYTES, &1500u64.to_be_bytes()),
                        attr(NFTA_COUNTER_PACKETS, &3u64.to_be_bytes()),
                    ],
                ),
            ],
        );
        let meta = nest(
            NFTA_LIST_ELEM,
            &[
                text(NFTA_EXPR_NAME, "meta"),
                nest(NFTA_EXPR_DATA, &[be32(2, 6), be32(1, 1)]),
            ],
        );
        let rule = [
            text(NFTA_RULE_TABLE, "hydra"),
            text(NFTA_RULE_CHAIN, "my-app-dnat"),
            nest(NFTA_RULE_EXPRESSIONS, &[meta, counter]),
            attr(NFTA_RULE_USERDATA, b"\x00\x07m0 new\x00"),
        ]
        .concat();
        assert_eq!(
            counted(Attributes(&rule)),
            [Counted {
                chain: "my-app-dnat".into(),
                comment: Some("m0 new".into()),
                packets: 3,
                bytes: 1500,
            }]
        );
    }
}

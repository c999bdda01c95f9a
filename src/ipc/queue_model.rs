//! An exhaustive model check of the queue's slot protocol: every interleaving of the atomic
//! steps of `try_send` and `try_recv` (the same state words, built by the same `word`
//! functions, the same decisions), for small queues with a few senders and receivers, with
//! and without one of them dying at any step. Each reachable state is visited once.
//!
//! Checked in every state: a receiver only ever reads the message published at the position
//! it claimed (no torn or overwritten read), nothing is delivered twice, and each receiver sees
//! each sender's messages in order. From every state, running the live threads round-robin
//! (a fair schedule) must finish every live sender and deliver every message that was
//! published and not taken by a receiver that died: no deadlock, no lost message, whoever died.

use std::collections::{HashSet, VecDeque};

use super::{
    distance, word, word_pos, word_state, word_token, FREE, READING, READY, SKIPPED, WRITING,
};

/// A message: (sender, sequence).
type Msg = (u8, u8);

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Pc {
    // sender
    LoadTail,
    LoadSlot { pos: u64 },
    Decide { pos: u64, w: u64 },
    Write { pos: u64 },
    Publish { pos: u64 },
    AdvanceTail { pos: u64 },
    // receiver
    LoadHead,
    RLoadSlot { pos: u64 },
    RDecide { pos: u64, w: u64 },
    Read { pos: u64 },
    Free { pos: u64, msg: Option<Msg> },
    AdvanceHead { pos: u64 },
    Done,
    Dead,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Thread {
    sender: bool,
    token: u32,
    pc: Pc,
    /// Sender: the next sequence to send.
    next: u8,
    /// Receiver: what it received, in order.
    got: Vec<Msg>,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct State {
    tail: u64,
    head: u64,
    slots: Vec<u64>,
    /// The message in each slot's buffer and the position it was written for.
    data: Vec<Option<(u64, Msg)>>,
    threads: Vec<Thread>,
    /// Messages published (ready) so far.
    published: Vec<Msg>,
    crashes: u8,
}

struct Model {
    capacity: u64,
    per_sender: u8,
    max_crashes: u8,
}

impl Model {
    fn start(&self, senders: usize, receivers: usize) -> State {
        let mut threads = Vec::new();
        for i in 0..senders + receivers {
            let sender = i < senders;
            threads.push(Thread {
                sender,
                token: i as u32 + 1,
                pc: if sender { Pc::LoadTail } else { Pc::LoadHead },
                next: 0,
                got: Vec::new(),
            });
        }
        State {
            tail: 0,
            head: 0,
            slots: (0..self.capacity).map(|i| word(i, FREE, 0)).collect(),
            data: vec![None; self.capacity as usize],
            threads,
            published: Vec::new(),
            crashes: 0,
        }
    }

    fn alive(s: &State, token: u32) -> bool {
        token == 0
            || s.threads
                .iter()
                .any(|t| t.token == token && t.pc != Pc::Dead)
    }

    fn with_pc(mut s: State, i: usize, pc: Pc) -> State {
        s.threads[i].pc = pc;
        s
    }

    fn cas(cell: &mut u64, old: u64, new: u64) -> bool {
        if *cell == old {
            *cell = new;
            true
        } else {
            false
        }
    }

    /// One atomic step of thread `i`; `None` when it has nothing to do.
    fn step(&self, s: &State, i: usize) -> Option<State> {
        let mut n = s.clone();
        let cap = self.capacity;
        let slot = |pos: u64| (pos % cap) as usize;
        let t = &s.threads[i];
        let pc = match &t.pc {
            Pc::Done | Pc::Dead => return None,
            // Senders
            Pc::LoadTail => Pc::LoadSlot { pos: s.tail },
            Pc::LoadSlot { pos } => Pc::Decide {
                pos: *pos,
                w: s.slots[slot(*pos)],
            },
            Pc::Decide { pos, w } => {
                let (pos, w) = (*pos, *w);
                let d = distance(word_pos(w), pos);
                if d == 0 && word_state(w) != FREE {
                    let _ = Self::cas(&mut n.tail, pos, pos + 1);
                    Pc::LoadTail
                } else if d == 0 {
                    if Self::cas(&mut n.slots[slot(pos)], w, word(pos, WRITING, t.token)) {
                        Pc::Write { pos }
                    } else {
                        Pc::LoadTail
                    }
                } else if d == -(cap as i64)
                    && word_state(w) == READING
                    && !Self::alive(s, word_token(w))
                {
                    let _ = Self::cas(&mut n.slots[slot(pos)], w, word(word_pos(w) + cap, FREE, 0));
                    Pc::LoadTail
                } else if d > 0 {
                    // Sent and taken already: the tail is stale; help it on.
                    let _ = Self::cas(&mut n.tail, pos, pos + 1);
                    Pc::LoadTail
                } else {
                    // Full (the sender sleeps and then looks again).
                    Pc::LoadTail
                }
            }
            Pc::Write { pos } => {
                n.data[slot(*pos)] = Some((*pos, (i as u8, t.next)));
                Pc::Publish { pos: *pos }
            }
            Pc::Publish { pos } => {
                let claimed = word(*pos, WRITING, t.token);
                assert!(
                    Self::cas(&mut n.slots[slot(*pos)], claimed, word(*pos, READY, 0)),
                    "a live sender's claim was taken from it: {s:?}"
                );
                n.published.push((i as u8, t.next));
                Pc::AdvanceTail { pos: *pos }
            }
            Pc::AdvanceTail { pos } => {
                let _ = Self::cas(&mut n.tail, *pos, pos + 1);
                n.threads[i].next += 1;
                if n.threads[i].next == self.per_sender {
                    Pc::Done
                } else {
                    Pc::LoadTail
                }
            }
            // Receivers
            Pc::LoadHead => Pc::RLoadSlot { pos: s.head },
            Pc::RLoadSlot { pos } => Pc::RDecide {
                pos: *pos,
                w: s.slots[slot(*pos)],
            },
            Pc::RDecide { pos, w } => {
                let (pos, w) = (*pos, *w);
                let d = distance(word_pos(w), pos);
                if d < 0 {
                    return Some(Self::with_pc(n, i, Pc::LoadHead)); // empty: sleep, look again
                }
                if d > 0 {
                    let _ = Self::cas(&mut n.head, pos, pos + 1);
                    Pc::LoadHead
                } else {
                    match word_state(w) {
                        FREE => Pc::LoadHead,
                        WRITING if Self::alive(s, word_token(w)) => Pc::LoadHead,
                        WRITING => {
                            let _ = Self::cas(&mut n.slots[slot(pos)], w, word(pos, SKIPPED, 0));
                            Pc::LoadHead
                        }
                        SKIPPED => {
                            if Self::cas(&mut n.slots[slot(pos)], w, word(pos + cap, FREE, 0)) {
                                let _ = Self::cas(&mut n.head, pos, pos + 1);
                            }
                            Pc::LoadHead
                        }
                        READY => {
                            // The head moves on after the free (helpers may move it first).
                            if Self::cas(&mut n.slots[slot(pos)], w, word(pos, READING, t.token)) {
                                Pc::Read { pos }
                            } else {
                                Pc::LoadHead
                            }
                        }
                        READING => {
                            let _ = Self::cas(&mut n.head, pos, pos + 1);
                            Pc::LoadHead
                        }
                        _ => unreachable!("the model writes no other state"),
                    }
                }
            }
            Pc::Read { pos } => {
                let (at, msg) = s.data[slot(*pos)].expect("a ready slot has data");
                assert_eq!(at, *pos, "read a message of another lap: {s:?}");
                Pc::Free {
                    pos: *pos,
                    msg: Some(msg),
                }
            }
            Pc::Free { pos, msg } => {
                let claimed = word(*pos, READING, t.token);
                let _ = Self::cas(&mut n.slots[slot(*pos)], claimed, word(*pos + cap, FREE, 0));
                let msg = msg.expect("read before freeing");
                let me = &mut n.threads[i];
                if let Some(before) = me.got.iter().rev().find(|m| m.0 == msg.0) {
                    assert!(before.1 < msg.1, "out of order: {msg:?} after {before:?}");
                }
                me.got.push(msg);
                Pc::AdvanceHead { pos: *pos }
            }
            Pc::AdvanceHead { pos } => {
                let _ = Self::cas(&mut n.head, *pos, pos + 1);
                Pc::LoadHead
            }
        };
        n.threads[i].pc = pc;
        Some(n)
    }

    fn successors(&self, s: &State) -> Vec<State> {
        let mut out = Vec::new();
        for i in 0..s.threads.len() {
            if let Some(n) = self.step(s, i) {
                out.push(n);
            }
            let t = &s.threads[i];
            if s.crashes < self.max_crashes && !matches!(t.pc, Pc::Done | Pc::Dead) {
                let mut n = s.clone();
                n.threads[i].pc = Pc::Dead;
                n.crashes += 1;
                out.push(n);
            }
        }
        out
    }

    fn delivered(s: &State) -> Vec<Msg> {
        s.threads
            .iter()
            .flat_map(|t| t.got.iter().copied())
            .collect()
    }

    /// Runs the live threads round-robin until the run repeats a state (only waiting is
    /// left); then every live sender must be done and every published message delivered
    /// (save those a dead receiver held).
    fn check_fair_run(&self, s: &State) {
        let mut cur = s.clone();
        let mut rounds = HashSet::new();
        while rounds.insert(cur.clone()) {
            for i in 0..cur.threads.len() {
                if let Some(n) = self.step(&cur, i) {
                    cur = n;
                }
            }
        }
        // With no receiver left, a full queue rightly keeps its senders waiting.
        let receivers = cur.threads.iter().any(|t| !t.sender && t.pc != Pc::Dead);
        for (i, t) in cur.threads.iter().enumerate() {
            assert!(
                !receivers || !t.sender || matches!(t.pc, Pc::Done | Pc::Dead),
                "sender {i} stuck: {cur:?}"
            );
        }
        let mut delivered = Self::delivered(&cur);
        let total = delivered.len();
        delivered.sort_unstable();
        delivered.dedup();
        assert_eq!(
            delivered.len(),
            total,
            "a message was delivered twice: {cur:?}"
        );
        let dead_receiver_held = cur
            .threads
            .iter()
            .filter(|t| !t.sender && t.pc == Pc::Dead)
            .count();
        let missing = cur
            .published
            .iter()
            .filter(|m| !delivered.contains(m))
            .count();
        // A receiver holds one message at a time: each dead one may have taken one with it.
        assert!(
            !receivers || missing <= dead_receiver_held,
            "published messages lost: {cur:?}"
        );
    }

    /// Explores every reachable state; returns how many there were.
    fn explore(&self, senders: usize, receivers: usize) -> usize {
        let start = self.start(senders, receivers);
        let mut seen = HashSet::new();
        let mut todo = VecDeque::from([start.clone()]);
        seen.insert(start);
        while let Some(s) = todo.pop_front() {
            self.check_fair_run(&s);
            for n in self.successors(&s) {
                if seen.insert(n.clone()) {
                    todo.push_back(n);
                }
            }
        }
        seen.len()
    }
}

#[test]
fn two_senders_one_receiver_wrapping_a_queue_of_two() {
    let states = Model {
        capacity: 2,
        per_sender: 2,
        max_crashes: 0,
    }
    .explore(2, 1);
    assert!(states > 1000, "{states}");
}

#[test]
fn one_sender_two_receivers_wrapping_a_queue_of_two() {
    let states = Model {
        capacity: 2,
        per_sender: 3,
        max_crashes: 0,
    }
    .explore(1, 2);
    assert!(states > 1000, "{states}");
}

#[test]
fn any_one_thread_dying_at_any_step_leaves_the_queue_working() {
    for (senders, receivers, per_sender) in [(2, 1, 2), (1, 2, 2), (2, 2, 1)] {
        let states = Model {
            capacity: 2,
            per_sender,
            max_crashes: 1,
        }
        .explore(senders, receivers);
        assert!(states > 1000, "{states}");
    }
}

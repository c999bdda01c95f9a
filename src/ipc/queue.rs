//! A bounded multi-producer/multi-consumer queue of variable-length messages in a sealed memfd,
//! shared by processes that do not trust each other.
//!
//! Layout: a 4 KiB header (geometry, the tail and head positions, two futex words with their
//! waiter counts, shared statistics, a table of per-opener counters), then `capacity` slots of
//! `slot_size` bytes: an 8-byte state word, a 4-byte length, padding, the message.
//!
//! Each slot's state word packs the position it belongs to (40 bits of the 64-bit ring
//! position), a state (free, writing, ready, reading, skipped) and the owner's liveness token
//! (21 bits). Claiming a slot is one compare-and-swap on that word, and so is publishing it:
//! a sender claims the free slot at the tail (word → writing, owner = its token), copies the
//! message, publishes (writing → ready) and only then moves the tail on. A receiver claims the
//! ready slot at the head (→ reading), copies the message out, frees the slot for the next lap
//! (position + capacity) and only then moves the head on. Whoever finds a claimed or
//! already-taken slot at the tail or head meanwhile moves it on (helping), so between a send
//! and the receive that gets it there are only the sender's claim and publish and the
//! receiver's claim; the free and the two moves (six locked instructions a message in all)
//! come after the publish or the copy (a busy-polling receiver frees at its next receive, so
//! its caller's answer does not wait for them either). Both
//! claims are one compare-and-swap that predicts the word (free for this lap; ready), with no
//! load before it: a load would fetch the line shared and the swap fetch it again exclusively.
//! The slot's index, `pos % capacity`, is computed by multiplication (`ring_index`). Neither
//! the sender nor the receiver makes a system call unless the queue is full or empty and
//! someone must sleep or be woken (futex words with waiter counts, Dekker-style: every
//! state-word swap, the waiter counts and the sleepers' checks are SeqCst, so either the waker
//! sees the waiter or the sleeper sees the change; no fence).
//!
//! Statistics: each opener counts its own messages and bytes, without a locked instruction, in
//! an entry of its own in the header's counter table (owned by its token; a dead opener's entry
//! is folded into the shared counters when a new opener needs it); openers beyond the table
//! count in the shared counters with atomic adds. The sum is what `stats` shows.
//!
//! A peer that dies between claim and publish leaves a slot in `writing` (or `reading`). Each
//! opener holds an OFD write lock on one byte (its token) of its own open file description of
//! the memfd for as long as it lives; the kernel drops it when the process dies. A receiver that
//! finds a `writing` slot at the head whose token nobody holds marks it `skipped` (the half
//! message is never delivered); a sender that finds a `reading` slot of a dead token frees it.
//!
//! Hostile peers: every word read from the shared memory is validated before use; geometry is
//! read once at open and checked against the sealed file size; lengths are clamped to the
//! slot; every loop is bounded. A peer that scribbles can make messages wrong or the queue
//! stall (until a timeout), never make another process crash or read out of bounds.

use std::cell::Cell;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::memfd::{self, Mapping, MemfdError};

#[derive(Debug, Error)]
pub enum QueueError {
    #[error(transparent)]
    Memfd(#[from] MemfdError),
    #[error("not a hydra queue: {0}")]
    Geometry(&'static str),
    #[error("a queue needs a capacity of 1 to {max} messages and a max_message of 1 byte to 16 MiB", max = MAX_CAPACITY)]
    BadSize,
    #[error("message of {len} bytes is larger than the channel's max_message of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("timed out")]
    TimedOut,
    #[error("the queue is full")]
    Full,
    #[error("the queue's shared state is inconsistent (a peer wrote over it)")]
    Corrupt,
    #[error("the message was dropped: a receiver took this sender for dead")]
    Dropped,
    #[error("no channel {0}: this process was not given it (not listed for it in the YAML)")]
    NoChannel(String),
    #[error("opening the channel's fd {fd}: {source}")]
    Open { fd: RawFd, source: std::io::Error },
}

const MAGIC: u64 = u64::from_le_bytes(*b"HYDRAQ01");
const VERSION: u32 = 2;
const HEADER: usize = 4096;
/// Offset of the message in a slot (after the state word and the length).
const DATA: usize = 16;
pub const MAX_CAPACITY: u32 = 1 << 20;
pub const MAX_MESSAGE: usize = 16 << 20;

// Header offsets; the hot words sit on cache lines of their own.
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_CAPACITY: usize = 12;
const OFF_SLOT_SIZE: usize = 16;
const OFF_MAX_MESSAGE: usize = 24;
const OFF_TAIL: usize = 128;
const OFF_HEAD: usize = 256;
const OFF_NOT_EMPTY: usize = 384;
const OFF_RECV_WAITERS: usize = 388;
const OFF_NOT_FULL: usize = 512;
const OFF_SEND_WAITERS: usize = 516;
const OFF_SENT: usize = 640;
const OFF_SENT_BYTES: usize = 648;
const OFF_FULL: usize = 656;
const OFF_RECEIVED: usize = 768;
const OFF_RECEIVED_BYTES: usize = 776;

// The counter table: one cache line per opener, each written by its owner only.
const OFF_COUNTERS: usize = 1024;
const COUNTER_ENTRIES: usize = 32;
const COUNTER_ENTRY: usize = 64;
// In an entry: the owner's token (u32; 0: free), then its counts.
const C_OWNER: usize = 0;
const C_SENT: usize = 8;
const C_SENT_BYTES: usize = 16;
const C_RECEIVED: usize = 24;
const C_RECEIVED_BYTES: usize = 32;
/// An entry being folded into the shared counters (no token is this large).
const RECLAIMING: u32 = u32::MAX;
/// Each entry's counts and the shared counter it folds into.
const FOLDS: [(usize, usize); 4] = [
    (C_SENT, OFF_SENT),
    (C_SENT_BYTES, OFF_SENT_BYTES),
    (C_RECEIVED, OFF_RECEIVED),
    (C_RECEIVED_BYTES, OFF_RECEIVED_BYTES),
];

// The slot state word: position (40 bits) | state (3 bits) | owner token (21 bits).
const POS_BITS: u32 = 40;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
const TOKEN_BITS: u32 = 21;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;
const FREE: u64 = 0;
const WRITING: u64 = 1;
const READY: u64 = 2;
const READING: u64 = 3;
const SKIPPED: u64 = 4;

fn word(pos: u64, state: u64, token: u32) -> u64 {
    ((pos & POS_MASK) << 24) | (state << TOKEN_BITS) | (u64::from(token) & TOKEN_MASK)
}

fn word_pos(w: u64) -> u64 {
    w >> 24
}

fn word_state(w: u64) -> u64 {
    (w >> TOKEN_BITS) & 0b111
}

fn word_token(w: u64) -> u32 {
    (w & TOKEN_MASK) as u32
}

/// `slot_pos - pos` as a signed distance in the 40-bit position space.
fn distance(slot_pos: u64, pos: u64) -> i64 {
    (((slot_pos.wrapping_sub(pos)) & POS_MASK) << 24) as i64 >> 24
}

/// How long a blocking call polls before it sleeps: waking a sleeping CPU costs tens of
/// microseconds on a VM, a peer that answers within this never pays it.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// Polls `ready` for up to `SPIN_BEFORE_SLEEP`, once per blocking call (`spun` remembers);
/// whether it became ready.
fn spun_once(spun: &mut bool, ready: impl Fn() -> bool) -> bool {
    if std::mem::replace(spun, true) {
        return false;
    }
    let start = Instant::now();
    while start.elapsed() < SPIN_BEFORE_SLEEP {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
    }
    false
}

/// Bounds every retry loop: a scribbling peer must not make us spin forever.
const RETRIES: usize = 1 << 16;
/// How often a receiver looks again at a slot being written before it gives up for now.
const WRITING_SPINS: usize = 64;
/// How long one claim must be seen stalled before its owner's liveness is asked (one fcntl).
const STALL_GRACE: Duration = Duration::from_millis(10);

/// What the header says about traffic (written by peers: informative, not trusted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub capacity: u32,
    pub max_message: u64,
    pub sent_messages: u64,
    pub sent_bytes: u64,
    pub received_messages: u64,
    pub received_bytes: u64,
    /// Messages waiting now (tail − head, clamped to the capacity).
    pub depth: u64,
    /// Times a sender found the queue full.
    pub full_events: u64,
}

/// The validated geometry of an opened queue (read once, kept privately).
#[derive(Debug, Clone, Copy)]
struct Geometry {
    capacity: u64,
    /// `capacity_magic(capacity)`, for `ring_index`.
    magic: u128,
    slot_size: usize,
    max_message: usize,
}

/// The multiplier that makes `ring_index` compute `pos % capacity` without a division:
/// ⌈2¹²⁸ / capacity⌉ (0, that is 2¹²⁸ wrapped, for a capacity of 1).
fn capacity_magic(capacity: u64) -> u128 {
    (u128::MAX / u128::from(capacity)).wrapping_add(1)
}

/// `pos % capacity` by Lemire's direct remainder (exact for every 64-bit `pos` and divisor):
/// three multiplications. Every send and receive needs the index; with a division for it (on
/// each side of a message, as many as four, before `Slot` kept the offset) the one-way latency
/// was 73 ns where it is now 67 (`cargo bench --bench ipc -- latency`, run side by side).
fn ring_index(pos: u64, magic: u128, capacity: u64) -> u64 {
    let low = magic.wrapping_mul(u128::from(pos));
    let cap = u128::from(capacity);
    let high = (low >> 64) * cap + (((low as u64) as u128 * cap) >> 64);
    (high >> 64) as u64
}

fn slot_size_for(max_message: usize) -> usize {
    (DATA + max_message).div_ceil(64) * 64
}

impl Geometry {
    fn new(capacity: u32, max_message: usize) -> Result<Geometry, QueueError> {
        if capacity == 0 || capacity > MAX_CAPACITY || max_message == 0 || max_message > MAX_MESSAGE
        {
            return Err(QueueError::BadSize);
        }
        Ok(Geometry {
            capacity: capacity.into(),
            magic: capacity_magic(capacity.into()),
            slot_size: slot_size_for(max_message),
            max_message,
        })
    }

    fn file_size(&self) -> u64 {
        HEADER as u64 + self.capacity * self.slot_size as u64
    }
}

/// A ring position and the offset of its slot in the mapping.
#[derive(Debug, Clone, Copy)]
struct Slot {
    pos: u64,
    off: usize,
}

/// One process's handle on a queue.
pub struct Queue {
    map: Mapping,
    geo: Geometry,
    /// This opener's liveness token (0: none could be taken; never declared dead).
    token: u32,
    /// Our own open file description of the memfd, which holds the token's lock.
    lock_fd: Option<OwnedFd>,
    /// Our entry in the counter table (its offset), if we got one.
    counters: Option<usize>,
    /// The last claim seen stalled (its state word) and since when (µs after `epoch`).
    stall_word: AtomicU64,
    stall_since: AtomicU64,
    epoch: Instant,
    /// The slot `recv_spin` last received from, not freed yet: it is freed (and the head moved
    /// on) at this handle's next receive or when it goes, so the two locked instructions that
    /// takes are not between a message's arrival and the caller's answer.
    pending: Cell<Option<Slot>>,
    /// Not `Sync`: our counter entry is written without locked instructions, so one thread at a
    /// time may use a handle (each thread opens its own; a handle may move between threads).
    _one_thread: PhantomData<Cell<()>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.geo.capacity)
            .field("max_message", &self.geo.max_message)
            .field("token", &self.token)
            .finish()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // A slot `recv_spin` received from is freed before the handle goes.
        self.release_pending();
    }
}

impl Queue {
    /// A new queue's memfd (`name` shows in /proc/PID/fd), sealed, with its header written
    /// and every slot free.
    pub fn create(name: &str, capacity: u32, max_message: usize) -> Result<OwnedFd, QueueError> {
        let geo = Geometry::new(capacity, max_message)?;
        let fd = memfd::create(name, geo.file_size())?;
        let map = Mapping::new(fd.as_fd(), true)?;
        let base = map.ptr();
        // SAFETY: the mapping is ours alone (the fd has not been handed out) and large enough
        // for the header and every slot, whose offsets are inside `file_size`.
        unsafe {
            base.add(OFF_MAGIC).cast::<u64>().write(MAGIC);
            base.add(OFF_VERSION).cast::<u32>().write(VERSION);
            base.add(OFF_CAPACITY).cast::<u32>().write(capacity);
            base.add(OFF_SLOT_SIZE)
                .cast::<u64>()
                .write(geo.slot_size as u64);
            base.add(OFF_MAX_MESSAGE)
                .cast::<u64>()
                .write(max_message as u64);
            for i in 0..geo.capacity {
                let slot = base.add(HEADER + i as usize * geo.slot_size);
                slot.cast::<u64>().write(word(i, FREE, 0));
            }
        }
        Ok(fd)
    }

    /// Opens the queue in `fd` (which stays the caller's) for sending and receiving.
    pub fn open(fd: BorrowedFd<'_>) -> Result<Queue, QueueError> {
        let map = Mapping::new(fd, true)?;
        let geo = read_geometry(&map)?;
        let (lock_fd, token) = match reopen(fd) {
            Some(own) => match take_token(own.as_fd()) {
                Some(token) => (Some(own), token),
                None => (None, 0),
            },
            None => (None, 0),
        };
        let mut q = Queue {
            map,
            geo,
            token,
            lock_fd,
            counters: None,
            stall_word: AtomicU64::new(0),
            stall_since: AtomicU64::new(0),
            epoch: Instant::now(),
            pending: Cell::new(None),
            _one_thread: PhantomData,
        };
        q.counters = q.take_counters();
        Ok(q)
    }

    /// Takes a free entry of the counter table for our token, or else the entry of a dead
    /// opener after adding its counts to the shared counters.
    fn take_counters(&self) -> Option<usize> {
        if self.token == 0 {
            return None;
        }
        let entries = (0..COUNTER_ENTRIES).map(|i| OFF_COUNTERS + i * COUNTER_ENTRY);
        for e in entries.clone() {
            let owner = self.u32_at(e + C_OWNER);
            if owner
                .compare_exchange(0, self.token, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some(e);
            }
        }
        for e in entries {
            let owner = self.u32_at(e + C_OWNER);
            let held = owner.load(Ordering::Acquire);
            if held == RECLAIMING || self.alive(held) {
                continue;
            }
            if owner
                .compare_exchange(held, RECLAIMING, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            for (field, shared) in FOLDS {
                let n = self.u64_at(e + field).swap(0, Ordering::AcqRel);
                self.u64_at(shared).fetch_add(n, Ordering::Relaxed);
            }
            owner.store(self.token, Ordering::Release);
            return Some(e);
        }
        None
    }

    /// Opens channel `name` from the fd announced in `HYDRA_IPC_<NAME>`.
    pub fn from_env(name: &str) -> Result<Queue, QueueError> {
        let fd =
            env_fd(&super::env_name(name)).ok_or_else(|| QueueError::NoChannel(name.into()))?;
        // SAFETY: the fd number was announced for this channel; it is only borrowed.
        Queue::open(unsafe { BorrowedFd::borrow_raw(fd) })
    }

    pub fn capacity(&self) -> u32 {
        self.geo.capacity as u32
    }

    pub fn max_message(&self) -> usize {
        self.geo.max_message
    }

    // ---- shared words -------------------------------------------------------------------

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        // SAFETY: every offset used is 8-aligned and inside the mapping (header constants, or a
        // slot start below `file_size`, checked at open); atomics are the only access.
        unsafe { &*self.map.ptr().add(off).cast::<AtomicU64>() }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: as above, 4-aligned.
        unsafe { &*self.map.ptr().add(off).cast::<AtomicU32>() }
    }

    /// The slot of position `pos`.
    fn slot(&self, pos: u64) -> Slot {
        let index = ring_index(pos, self.geo.magic, self.geo.capacity);
        Slot {
            pos,
            off: HEADER + index as usize * self.geo.slot_size,
        }
    }

    fn state(&self, slot: Slot) -> &AtomicU64 {
        self.u64_at(slot.off)
    }

    fn state_word(&self, pos: u64) -> &AtomicU64 {
        self.state(self.slot(pos))
    }

    /// Asks the CPU to fetch, for writing, the cache lines of `slot` that a message of `len`
    /// bytes spills into (the first, with the state word, comes with the claim), at most three:
    /// their transfers from the other core then overlap the claim instead of following it.
    fn prefetch_message(&self, slot: Slot, len: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
            let lines = (DATA + len.min(self.geo.max_message)).div_ceil(64).min(4);
            for i in 1..lines {
                let line = self.map.ptr().wrapping_add(slot.off + i * 64).cast::<i8>();
                // SAFETY: a prefetch is a hint: it never faults and changes no memory; the
                // address is inside the slot anyway.
                unsafe { _mm_prefetch::<_MM_HINT_ET0>(line) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (slot, len);
    }

    /// Adds to a shared counter (`shared`), or to the same count (`field`) in our own entry,
    /// which only this handle writes: a plain add, no locked instruction on the fast path.
    fn count(&self, shared: usize, field: usize, by: u64) {
        match self.counters {
            Some(e) => {
                let c = self.u64_at(e + field);
                c.store(
                    c.load(Ordering::Relaxed).wrapping_add(by),
                    Ordering::Relaxed,
                );
            }
            None => {
                self.u64_at(shared).fetch_add(by, Ordering::Relaxed);
            }
        }
    }

    // ---- liveness -------------------------------------------------------------------------

    /// Whether the opener that holds `token` still lives (its lock is held). Unknown tokens
    /// (0, or no lock fd of our own to ask with) count as alive: never skip what may finish.
    fn alive(&self, token: u32) -> bool {
        if token == 0 || token == self.token {
            return true;
        }
        match &self.lock_fd {
            Some(fd) => token_held(fd.as_fd(), token),
            None => true,
        }
    }

    /// Whether the claim `w` belongs to a dead peer: only once the same claim has been seen
    /// stalled for `STALL_GRACE`, so a healthy queue never asks the kernel.
    fn claim_dead(&self, w: u64) -> bool {
        let now = self.epoch.elapsed().as_micros() as u64;
        if self.stall_word.swap(w, Ordering::Relaxed) != w {
            self.stall_since.store(now, Ordering::Relaxed);
            return false;
        }
        let since = self.stall_since.load(Ordering::Relaxed);
        if now.saturating_sub(since) < STALL_GRACE.as_micros() as u64 {
            return false;
        }
        !self.alive(word_token(w))
    }

    // ---- sending -------------------------------------------------------------------------------

    /// Sends `msg` if there is room now.
    pub fn try_send(&self, msg: &[u8]) -> Result<(), QueueError> {
        if msg.len() > self.geo.max_message {
            return Err(QueueError::TooLarge {
                len: msg.len(),
                max: self.geo.max_message,
            });
        }
        let tail = self.u64_at(OFF_TAIL);
        for _ in 0..RETRIES {
            let pos = tail.load(Ordering::Acquire);
            let at = self.slot(pos);
            let slot = self.state(at);
            self.prefetch_message(at, msg.len());
            // Claim at once, expecting the slot free for this lap (the common case): one
            // exclusive fetch of the line the receiver polls instead of a shared one and then
            // an exclusive one. A failed swap returns what the slot holds: the general case.
            let claimed = word(pos, WRITING, self.token);
            let w = match slot.compare_exchange(
                word(pos, FREE, 0),
                claimed,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.publish(at, msg)?;
                    return Ok(());
                }
                Err(w) => w,
            };
            let d = distance(word_pos(w), pos);
            if d == 0 {
                if word_state(w) != FREE {
                    // Claimed for this lap already: help the tail on.
                    let _ =
                        tail.compare_exchange(pos, pos + 1, Ordering::SeqCst, Ordering::Relaxed);
                    continue;
                }
                if slot
                    .compare_exchange(w, claimed, Ordering::SeqCst, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                self.publish(at, msg)?;
                return Ok(());
            }
            if d < 0 {
                // The slot still holds the previous lap: full, unless a dead receiver holds it.
                if d == -(self.geo.capacity as i64)
                    && word_state(w) == READING
                    && self.claim_dead(w)
                {
                    let freed = word(word_pos(w) + self.geo.capacity, FREE, 0);
                    let _ = slot.compare_exchange(w, freed, Ordering::SeqCst, Ordering::Relaxed);
                    continue;
                }
                if tail.load(Ordering::Acquire) == pos {
                    return Err(QueueError::Full);
                }
            }
            if d > 0 {
                // This position was sent and taken already: the tail is stale (its sender died
                // before moving it on, or we read it late). Help it on.
                let _ = tail.compare_exchange(pos, pos + 1, Ordering::SeqCst, Ordering::Relaxed);
            }
        }
        Err(QueueError::Corrupt)
    }

    /// With `slot` claimed by us: copies the message in, publishes it, and then
    /// moves the tail on: a receiver may take the message before that (other senders that
    /// find the claimed slot at the tail help the tail on meanwhile).
    fn publish(&self, slot: Slot, msg: &[u8]) -> Result<(), QueueError> {
        self.write_slot(slot, msg);
        let pos = slot.pos;
        let claimed = word(pos, WRITING, self.token);
        let ready = word(pos, READY, 0);
        let published =
            self.state(slot)
                .compare_exchange(claimed, ready, Ordering::SeqCst, Ordering::Relaxed);
        let tail = self.u64_at(OFF_TAIL);
        let _ = tail.compare_exchange(pos, pos + 1, Ordering::SeqCst, Ordering::Relaxed);
        if published.is_err() {
            return Err(QueueError::Dropped);
        }
        self.count(OFF_SENT, C_SENT, 1);
        self.count(OFF_SENT_BYTES, C_SENT_BYTES, msg.len() as u64);
        self.wake(OFF_NOT_EMPTY, OFF_RECV_WAITERS);
        Ok(())
    }

    fn write_slot(&self, slot: Slot, msg: &[u8]) {
        let off = slot.off;
        self.u32_at(off + 8)
            .store(msg.len() as u32, Ordering::Relaxed);
        // SAFETY: the slot is ours (claimed); the message fits (checked against max_message,
        // and the slot is DATA + max_message bytes); the destination is inside the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), self.map.ptr().add(off + DATA), msg.len())
        };
    }

    /// Sends `msg`, sleeping while the queue is full.
    pub fn send(&self, msg: &[u8]) -> Result<(), QueueError> {
        self.send_until(msg, None)
    }

    /// Sends `msg`, sleeping while the queue is full, for at most `timeout`.
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), QueueError> {
        self.send_until(msg, Some(Instant::now() + timeout))
    }

    /// Sends `msg`, polling (never sleeping) while the queue is full.
    pub fn send_spin(&self, msg: &[u8]) -> Result<(), QueueError> {
        loop {
            match self.try_send(msg) {
                Err(QueueError::Full) => std::hint::spin_loop(),
                other => return other,
            }
        }
    }

    fn send_until(&self, msg: &[u8], deadline: Option<Instant>) -> Result<(), QueueError> {
        let mut full_counted = false;
        let mut spun = false;
        loop {
            match self.try_send(msg) {
                Err(QueueError::Full) => {}
                other => return other,
            }
            if !full_counted {
                self.u64_at(OFF_FULL).fetch_add(1, Ordering::Relaxed);
                full_counted = true;
            }
            if spun_once(&mut spun, || self.has_room()) {
                continue;
            }
            let recheck = self.stalled_at(OFF_TAIL, READING);
            self.sleep(OFF_NOT_FULL, OFF_SEND_WAITERS, deadline, recheck, || {
                self.has_room()
            })?;
        }
    }

    /// Sends every message of `msgs` in order, sleeping while full; returns how many were sent
    /// (all of them, unless an error stopped it: then the error if none was sent).
    pub fn send_batch(&self, msgs: &[&[u8]]) -> Result<usize, QueueError> {
        for (i, msg) in msgs.iter().enumerate() {
            if let Err(e) = self.send(msg) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(msgs.len())
    }

    fn has_room(&self) -> bool {
        let pos = self.u64_at(OFF_TAIL).load(Ordering::SeqCst);
        let w = self.state_word(pos).load(Ordering::SeqCst);
        distance(word_pos(w), pos) >= 0
    }

    // ---- receiving -----------------------------------------------------------------------------

    /// Receives the next message into `buf` (replacing its contents) if one is ready;
    /// `Ok(false)` when the queue is empty.
    pub fn try_recv(&self, buf: &mut Vec<u8>) -> Result<bool, QueueError> {
        self.receive(buf, false)
    }

    /// `try_recv`; with `defer`, the slot received from is freed at the next receive instead of
    /// before returning (`recv_spin`).
    fn receive(&self, buf: &mut Vec<u8>, defer: bool) -> Result<bool, QueueError> {
        self.release_pending();
        let head = self.u64_at(OFF_HEAD);
        let mut spins = 0usize;
        for _ in 0..RETRIES {
            let pos = head.load(Ordering::Acquire);
            let at = self.slot(pos);
            let slot = self.state(at);
            let claimed = word(pos, READING, self.token);
            let w = match slot.compare_exchange(
                word(pos, READY, 0),
                claimed,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.take(at, buf, defer);
                    return Ok(true);
                }
                Err(w) => w,
            };
            let d = distance(word_pos(w), pos);
            if d < 0 {
                return Ok(false); // the producer of this position has not come yet
            }
            if d > 0 {
                // Consumed already (next lap's position): the head is stale; help it on.
                let _ = head.compare_exchange(pos, pos + 1, Ordering::SeqCst, Ordering::Relaxed);
                continue;
            }
            match word_state(w) {
                FREE => return Ok(false),
                WRITING => {
                    // Being written: look again a few times (a copy takes microseconds). If its
                    // writer died, the message never comes: skip it.
                    if spins < WRITING_SPINS {
                        spins += 1;
                        std::hint::spin_loop();
                        continue;
                    }
                    if !self.claim_dead(w) {
                        return Ok(false);
                    }
                    let skipped = word(pos, SKIPPED, 0);
                    let _ = slot.compare_exchange(w, skipped, Ordering::SeqCst, Ordering::Relaxed);
                }
                SKIPPED => {
                    let next = word(pos + self.geo.capacity, FREE, 0);
                    if slot
                        .compare_exchange(w, next, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        let _ = head.compare_exchange(
                            pos,
                            pos + 1,
                            Ordering::SeqCst,
                            Ordering::Relaxed,
                        );
                        self.wake(OFF_NOT_FULL, OFF_SEND_WAITERS);
                    }
                }
                READY => {
                    // A ready word the predicted swap did not match: one with an owner token,
                    // which no sender writes (a scribbler did). Take it all the same.
                    if slot
                        .compare_exchange(w, claimed, Ordering::SeqCst, Ordering::Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    self.take(at, buf, defer);
                    return Ok(true);
                }
                READING => {
                    // Another receiver has it: help the head on.
                    let _ =
                        head.compare_exchange(pos, pos + 1, Ordering::SeqCst, Ordering::Relaxed);
                }
                _ => return Err(QueueError::Corrupt),
            }
        }
        Err(QueueError::Corrupt)
    }

    /// With `slot` claimed by us: copies the message out, then frees the slot (now, or at the
    /// next receive with `defer`).
    fn take(&self, slot: Slot, buf: &mut Vec<u8>, defer: bool) {
        self.read_slot(slot, buf);
        self.count(OFF_RECEIVED, C_RECEIVED, 1);
        self.count(OFF_RECEIVED_BYTES, C_RECEIVED_BYTES, buf.len() as u64);
        match defer {
            true => self.pending.set(Some(slot)),
            false => self.release(slot),
        }
    }

    /// Frees the slot `recv_spin` last received from, if it has not been freed yet.
    fn release_pending(&self) {
        if let Some(slot) = self.pending.take() {
            self.release(slot);
        }
    }

    /// Frees `slot`, claimed and read by us, for the next lap, and then moves the head on
    /// (helpers may move it first): the message reaches its reader one locked instruction
    /// sooner.
    fn release(&self, slot: Slot) {
        let pos = slot.pos;
        let claimed = word(pos, READING, self.token);
        let next = word(pos + self.geo.capacity, FREE, 0);
        // A failure means a sender took us for dead and freed the slot already.
        let _ =
            self.state(slot)
                .compare_exchange(claimed, next, Ordering::SeqCst, Ordering::Relaxed);
        self.wake(OFF_NOT_FULL, OFF_SEND_WAITERS);
        let head = self.u64_at(OFF_HEAD);
        let _ = head.compare_exchange(pos, pos + 1, Ordering::SeqCst, Ordering::Relaxed);
    }

    fn read_slot(&self, slot: Slot, buf: &mut Vec<u8>) {
        let off = slot.off;
        // A peer may have written any length: never read past the slot.
        let len = (self.u32_at(off + 8).load(Ordering::Relaxed) as usize).min(self.geo.max_message);
        buf.clear();
        buf.reserve(len);
        // SAFETY: the source range [off + DATA, off + DATA + len) lies inside the slot, which
        // lies inside the mapping; the destination has room for len bytes. A peer writing the
        // source concurrently can only change the bytes we copy.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.ptr().add(off + DATA), buf.as_mut_ptr(), len);
            buf.set_len(len);
        }
    }

    /// Receives the next message into `buf`, sleeping while the queue is empty.
    pub fn recv(&self, buf: &mut Vec<u8>) -> Result<(), QueueError> {
        self.recv_until(buf, None).map(drop)
    }

    /// Receives the next message into `buf`, sleeping while empty for at most `timeout`;
    /// `Ok(false)` if none came.
    pub fn recv_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<bool, QueueError> {
        match self.recv_until(buf, Some(Instant::now() + timeout)) {
            Err(QueueError::TimedOut) => Ok(false),
            other => other,
        }
    }

    /// Receives the next message into `buf`, polling (never sleeping) while empty. The slot it
    /// came in stays claimed until this handle's next receive (of any kind) or until the handle
    /// goes: freeing it then keeps two locked instructions off the path between a message and
    /// the caller's answer. Meanwhile the queue holds one message fewer.
    pub fn recv_spin(&self, buf: &mut Vec<u8>) -> Result<(), QueueError> {
        loop {
            if self.receive(buf, true)? {
                return Ok(());
            }
            std::hint::spin_loop();
        }
    }

    fn recv_until(&self, buf: &mut Vec<u8>, deadline: Option<Instant>) -> Result<bool, QueueError> {
        let mut spun = false;
        loop {
            if self.try_recv(buf)? {
                return Ok(true);
            }
            if spun_once(&mut spun, || self.has_message()) {
                continue;
            }
            let recheck = self.stalled_at(OFF_HEAD, WRITING);
            self.sleep(OFF_NOT_EMPTY, OFF_RECV_WAITERS, deadline, recheck, || {
                self.has_message()
            })?;
        }
    }

    /// Receives up to `max` messages into `out` (appended): waits (up to `timeout`, forever
    /// when `None`) for the first, then takes what is ready without waiting. Returns how many.
    pub fn recv_batch(
        &self,
        out: &mut Vec<Vec<u8>>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, QueueError> {
        if max == 0 {
            return Ok(0);
        }
        let mut buf = Vec::new();
        let got = match timeout {
            Some(t) => self.recv_timeout(&mut buf, t)?,
            None => self.recv(&mut buf).map(|()| true)?,
        };
        if !got {
            return Ok(0);
        }
        out.push(std::mem::take(&mut buf));
        let mut n = 1;
        while n < max && self.try_recv(&mut buf)? {
            out.push(std::mem::take(&mut buf));
            n += 1;
        }
        Ok(n)
    }

    fn has_message(&self) -> bool {
        let pos = self.u64_at(OFF_HEAD).load(Ordering::SeqCst);
        let w = self.state_word(pos).load(Ordering::SeqCst);
        distance(word_pos(w), pos) > 0 || matches!(word_state(w), READY | SKIPPED | READING)
    }

    // ---- sleeping and waking -------------------------------------------------------------------

    /// Whether the slot at position `pos_off` (tail or head) is held in `state` by a peer: a
    /// sleeper then wakes soon to see whether that peer died, as no wake would ever come.
    fn stalled_at(&self, pos_off: usize, state: u64) -> bool {
        let pos = self.u64_at(pos_off).load(Ordering::Acquire);
        word_state(self.state_word(pos).load(Ordering::Acquire)) == state
    }

    /// Sleeps on futex word `word_off` until woken, `ready()` holds, or `deadline` passes (a
    /// second at most, `2 × STALL_GRACE` when `recheck`). The waiter count at `waiters_off`
    /// tells the other side a wake is needed.
    fn sleep(
        &self,
        word_off: usize,
        waiters_off: usize,
        deadline: Option<Instant>,
        recheck: bool,
        ready: impl Fn() -> bool,
    ) -> Result<(), QueueError> {
        let longest = if recheck {
            STALL_GRACE * 2
        } else {
            Duration::from_secs(1)
        };
        let timeout = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(QueueError::TimedOut);
                }
                (d - now).min(longest)
            }
            None => longest,
        };
        let futex = self.u32_at(word_off);
        let waiters = self.u32_at(waiters_off);
        waiters.fetch_add(1, Ordering::SeqCst);
        let seen = futex.load(Ordering::SeqCst);
        if !ready() {
            // Bounded even without a deadline: a peer may scribble over the word, or die.
            futex_wait(futex, seen, timeout);
        }
        waiters.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    /// Wakes the sleepers on `word_off`, if its waiter count says there are any: no system call
    /// otherwise.
    fn wake(&self, word_off: usize, waiters_off: usize) {
        if self.u32_at(waiters_off).load(Ordering::SeqCst) == 0 {
            return;
        }
        let futex = self.u32_at(word_off);
        futex.fetch_add(1, Ordering::SeqCst);
        futex_wake(futex);
    }

    // ---- statistics ----------------------------------------------------------------------------

    pub fn stats(&self) -> Stats {
        stats_of(&self.map, &self.geo)
    }
}

fn stats_of(map: &Mapping, geo: &Geometry) -> Stats {
    let read = |off: usize| {
        // SAFETY: header offsets inside the mapping, 8-aligned; atomic loads only.
        unsafe { &*map.ptr().add(off).cast::<AtomicU64>() }.load(Ordering::Relaxed)
    };
    // The tail moves on after a publish, so a quick receiver can move the head past it for a
    // moment: saturate rather than wrap.
    let depth = read(OFF_TAIL)
        .saturating_sub(read(OFF_HEAD))
        .min(geo.capacity);
    // A shared counter plus every entry's count of the same thing.
    let total = |shared: usize, field: usize| {
        (0..COUNTER_ENTRIES).fold(read(shared), |sum, i| {
            sum.wrapping_add(read(OFF_COUNTERS + i * COUNTER_ENTRY + field))
        })
    };
    Stats {
        capacity: geo.capacity as u32,
        max_message: geo.max_message as u64,
        sent_messages: total(OFF_SENT, C_SENT),
        sent_bytes: total(OFF_SENT_BYTES, C_SENT_BYTES),
        received_messages: total(OFF_RECEIVED, C_RECEIVED),
        received_bytes: total(OFF_RECEIVED_BYTES, C_RECEIVED_BYTES),
        depth,
        full_events: read(OFF_FULL),
    }
}

/// The statistics of the queue in `fd`, through a read-only mapping (the supervisor's view).
pub fn read_stats(fd: BorrowedFd<'_>) -> Result<Stats, QueueError> {
    let map = Mapping::new(fd, false)?;
    let geo = read_geometry(&map)?;
    Ok(stats_of(&map, &geo))
}

/// Reads and checks the header's geometry against the sealed size of the mapping.
fn read_geometry(map: &Mapping) -> Result<Geometry, QueueError> {
    if map.len() < HEADER {
        return Err(QueueError::Geometry("smaller than a queue header"));
    }
    let base = map.ptr();
    // SAFETY: the header lies inside the mapping (checked above); plain reads of values a
    // peer may change later, which is why they are read once and validated here.
    let (magic, version, capacity, slot_size, max_message) = unsafe {
        (
            std::ptr::read_volatile(base.add(OFF_MAGIC).cast::<u64>()),
            std::ptr::read_volatile(base.add(OFF_VERSION).cast::<u32>()),
            std::ptr::read_volatile(base.add(OFF_CAPACITY).cast::<u32>()),
            std::ptr::read_volatile(base.add(OFF_SLOT_SIZE).cast::<u64>()),
            std::ptr::read_volatile(base.add(OFF_MAX_MESSAGE).cast::<u64>()),
        )
    };
    if magic != MAGIC {
        return Err(QueueError::Geometry("bad magic"));
    }
    if version != VERSION {
        return Err(QueueError::Geometry("unknown version"));
    }
    let geo = Geometry::new(capacity, max_message.min(MAX_MESSAGE as u64 + 1) as usize)
        .map_err(|_| QueueError::Geometry("bad capacity or max_message"))?;
    if slot_size != geo.slot_size as u64 {
        return Err(QueueError::Geometry("bad slot size"));
    }
    if geo.file_size() != map.len() as u64 {
        return Err(QueueError::Geometry("size does not match the geometry"));
    }
    Ok(geo)
}

// ---- fds, tokens and futexes -------------------------------------------------------------------

/// The fd number in environment variable `var`, if it names an open fd.
pub fn env_fd(var: &str) -> Option<RawFd> {
    let fd: RawFd = std::env::var(var).ok()?.trim().parse().ok()?;
    // SAFETY: fcntl F_GETFD only asks whether the fd exists.
    (fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0).then_some(fd)
}

/// A new open file description of the memfd behind `fd` (through /proc/self/fd), so that this
/// opener's OFD locks are its own rather than shared with every process holding `fd`.
fn reopen(fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    let path = format!("/proc/self/fd/{}\0", fd.as_raw_fd());
    // SAFETY: open with a NUL-terminated path; the fd is owned at once.
    let own = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC) };
    // SAFETY: as above.
    (own >= 0).then(|| unsafe { OwnedFd::from_raw_fd(own) })
}

fn lock_request(token: u32, kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain data; zero is a valid value for every field.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = libc::off_t::from(token);
    fl.l_len = 1;
    fl
}

/// Takes a free token: an OFD write lock on that byte of our own description, held until the
/// description closes (when this process ends).
fn take_token(own: BorrowedFd<'_>) -> Option<u32> {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1)
        ^ std::process::id().rotate_left(11);
    for _ in 0..64 {
        // xorshift: a different candidate each time, never 0.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let token = (seed & TOKEN_MASK as u32).max(1);
        let mut fl = lock_request(token, libc::F_WRLCK);
        // SAFETY: fcntl with a flock on this stack.
        if unsafe { libc::fcntl(own.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) } == 0 {
            return Some(token);
        }
    }
    None
}

/// Whether some open file description holds `token`'s lock.
fn token_held(own: BorrowedFd<'_>, token: u32) -> bool {
    let mut fl = lock_request(token, libc::F_WRLCK);
    // SAFETY: fcntl with a flock on this stack.
    if unsafe { libc::fcntl(own.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } != 0 {
        return true; // cannot tell: assume alive
    }
    fl.l_type != libc::F_UNLCK as libc::c_short
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT (shared: the word is in a MAP_SHARED mapping) on an aligned word
    // inside our mapping, with a timespec on this stack.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on an aligned word inside our mapping.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "queue_model.rs"]
mod model;

//! The queue's behaviour between threads of one process (each thread with its own `Queue`,
//! as processes have): order, sizes, wrap-around, blocking and timeouts, many producers and
//! consumers, peers that die mid-message, and peers that scribble over the shared memory.

use super::*;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::Arc;

fn new_queue(capacity: u32, max: usize) -> OwnedFd {
    Queue::create("test", capacity, max).expect("creating a queue")
}

fn open(fd: &OwnedFd) -> Queue {
    Queue::open(fd.as_fd()).expect("opening a queue")
}

/// Message `seq` of producer `p`: header then a pattern, `len` bytes in all (at least 8).
fn message(p: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(len.max(8));
    m.extend_from_slice(&p.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend((8..len).map(|i| (i as u32 ^ seq ^ p) as u8));
    m
}

fn parse(m: &[u8]) -> (u32, u32) {
    let word = |i: usize| u32::from_le_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
    let (p, seq) = (word(0), word(4));
    assert_eq!(
        m,
        message(p, seq, m.len()).as_slice(),
        "message body corrupted"
    );
    (p, seq)
}

#[test]
fn one_producer_one_consumer_keeps_order_and_content_across_wrap_around() {
    let fd = new_queue(4, 300);
    let (tx, rx) = (open(&fd), open(&fd));
    const N: u32 = 20_000;
    let producer = std::thread::spawn(move || {
        for seq in 0..N {
            tx.send(&message(0, seq, 8 + (seq as usize * 7) % 293))
                .unwrap();
        }
    });
    let mut buf = Vec::new();
    for seq in 0..N {
        rx.recv(&mut buf).unwrap();
        assert_eq!(parse(&buf), (0, seq));
        assert_eq!(buf.len(), 8 + (seq as usize * 7) % 293);
    }
    producer.join().unwrap();
    let stats = rx.stats();
    assert_eq!(
        (stats.sent_messages, stats.received_messages),
        (N as u64, N as u64)
    );
    assert_eq!(stats.depth, 0);
}

#[test]
fn every_size_from_empty_to_the_maximum_round_trips() {
    let max = 1000;
    let fd = new_queue(3, max);
    let q = open(&fd);
    let mut buf = Vec::new();
    for len in 0..=max {
        let msg: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        q.try_send(&msg).unwrap();
        assert!(q.try_recv(&mut buf).unwrap());
        assert_eq!(buf, msg, "length {len}");
    }
    assert!(matches!(
        q.try_send(&vec![0; max + 1]),
        Err(QueueError::TooLarge {
            len: 1001,
            max: 1000
        })
    ));
}

#[test]
fn many_producers_and_consumers_deliver_each_message_once_in_producer_order() {
    let fd = Arc::new(new_queue(8, 64));
    const PRODUCERS: u32 = 4;
    const PER: u32 = 20_000;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = open(&fd);
            std::thread::spawn(move || {
                for seq in 0..PER {
                    q.send(&message(p, seq, 8 + (seq % 50) as usize)).unwrap();
                }
            })
        })
        .collect();
    let received = Arc::new(AtomicU64::new(0));
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let q = open(&fd);
            let received = received.clone();
            std::thread::spawn(move || {
                let mut last: HashMap<u32, u32> = HashMap::new();
                let mut got = Vec::new();
                let mut buf = Vec::new();
                while received.load(Ordering::SeqCst) < u64::from(PRODUCERS * PER) {
                    if !q.recv_timeout(&mut buf, Duration::from_millis(50)).unwrap() {
                        continue;
                    }
                    received.fetch_add(1, Ordering::SeqCst);
                    let (p, seq) = parse(&buf);
                    if let Some(&before) = last.get(&p) {
                        assert!(seq > before, "producer {p}: {seq} after {before}");
                    }
                    last.insert(p, seq);
                    got.push((p, seq));
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all: Vec<(u32, u32)> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    let expected: Vec<(u32, u32)> = (0..PRODUCERS)
        .flat_map(|p| (0..PER).map(move |s| (p, s)))
        .collect();
    assert_eq!(all.len(), expected.len());
    assert!(all == expected, "a message was lost or duplicated");
}

#[test]
fn a_full_queue_refuses_times_out_and_wakes_a_blocked_sender() {
    let fd = new_queue(2, 16);
    let (tx, rx) = (open(&fd), open(&fd));
    tx.try_send(b"a").unwrap();
    tx.try_send(b"b").unwrap();
    assert!(matches!(tx.try_send(b"c"), Err(QueueError::Full)));
    let t0 = Instant::now();
    assert!(matches!(
        tx.send_timeout(b"c", Duration::from_millis(50)),
        Err(QueueError::TimedOut)
    ));
    assert!(t0.elapsed() >= Duration::from_millis(50));
    assert!(t0.elapsed() < Duration::from_secs(2));
    let blocked = std::thread::spawn(move || {
        let t0 = Instant::now();
        tx.send(b"c").unwrap();
        t0.elapsed()
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut buf = Vec::new();
    assert!(rx.try_recv(&mut buf).unwrap());
    let waited = blocked.join().unwrap();
    assert!(waited >= Duration::from_millis(90), "{waited:?}");
    assert!(
        waited < Duration::from_millis(900),
        "woken, not timed out: {waited:?}"
    );
    for want in [&b"b"[..], b"c"] {
        assert!(rx.try_recv(&mut buf).unwrap());
        assert_eq!(buf, want);
    }
    assert!(rx.stats().full_events >= 2);
}

#[test]
fn an_empty_queue_times_out_and_wakes_a_blocked_receiver() {
    let fd = new_queue(2, 16);
    let (tx, rx) = (open(&fd), open(&fd));
    let mut buf = Vec::new();
    assert!(!rx.try_recv(&mut buf).unwrap());
    let t0 = Instant::now();
    assert!(!rx
        .recv_timeout(&mut buf, Duration::from_millis(50))
        .unwrap());
    assert!(t0.elapsed() >= Duration::from_millis(50));
    let blocked = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let t0 = Instant::now();
        rx.recv(&mut buf).unwrap();
        (buf, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    tx.send(b"wake").unwrap();
    let (got, waited) = blocked.join().unwrap();
    assert_eq!(got, b"wake");
    assert!(
        waited < Duration::from_millis(900),
        "woken, not timed out: {waited:?}"
    );
}

#[test]
fn a_busy_polled_slot_is_freed_at_the_next_receive_or_when_the_handle_goes() {
    let fd = new_queue(1, 16);
    let (tx, rx) = (open(&fd), open(&fd));
    let mut buf = Vec::new();
    tx.try_send(b"one").unwrap();
    rx.recv_spin(&mut buf).unwrap();
    assert_eq!(buf, b"one");
    // Still claimed: the one slot is not free yet.
    assert!(matches!(tx.try_send(b"two"), Err(QueueError::Full)));
    assert_eq!(rx.stats().received_messages, 1);
    // Any receive frees it first, an empty one too.
    assert!(!rx.try_recv(&mut buf).unwrap());
    tx.try_send(b"two").unwrap();
    rx.recv_spin(&mut buf).unwrap();
    assert_eq!(buf, b"two");
    // A blocked sender is woken by the free at the next busy poll.
    let sender = std::thread::spawn(move || {
        tx.send(b"three").unwrap();
        tx
    });
    rx.recv_spin(&mut buf).unwrap();
    assert_eq!(buf, b"three");
    let tx = sender.join().unwrap();
    // The handle going frees it too.
    drop(rx);
    tx.try_send(b"four").unwrap();
}

#[test]
fn batches_go_in_order_and_come_out_up_to_the_limit() {
    let fd = new_queue(8, 16);
    let q = open(&fd);
    let msgs: Vec<&[u8]> = vec![b"1", b"22", b"333", b"4444", b"55555"];
    assert_eq!(q.send_batch(&msgs).unwrap(), 5);
    let mut out = Vec::new();
    assert_eq!(
        q.recv_batch(&mut out, 3, Some(Duration::from_millis(10)))
            .unwrap(),
        3
    );
    assert_eq!(
        q.recv_batch(&mut out, 10, Some(Duration::from_millis(10)))
            .unwrap(),
        2
    );
    assert_eq!(out, msgs.iter().map(|m| m.to_vec()).collect::<Vec<_>>());
    assert_eq!(
        q.recv_batch(&mut out, 10, Some(Duration::from_millis(10)))
            .unwrap(),
        0
    );
}

/// A token nobody holds (no opener has its lock).
fn dead_token(q: &Queue) -> u32 {
    (1..TOKEN_MASK as u32)
        .find(|&t| t != q.token && !token_held(q.lock_fd.as_ref().unwrap().as_fd(), t))
        .unwrap()
}

#[test]
fn a_message_whose_writer_died_mid_copy_is_skipped() {
    let fd = new_queue(4, 16);
    let (tx, rx) = (open(&fd), open(&fd));
    assert_ne!(rx.token, 0, "a liveness token is taken at open");
    // A sender claims position 0 and dies before publishing it.
    let dead = dead_token(&rx);
    rx.state_word(0)
        .store(word(0, WRITING, dead), Ordering::SeqCst);
    rx.u64_at(OFF_TAIL).store(1, Ordering::SeqCst);
    tx.send(b"after").unwrap();
    let mut buf = Vec::new();
    let t0 = Instant::now();
    assert!(rx.recv_timeout(&mut buf, Duration::from_secs(3)).unwrap());
    assert_eq!(buf, b"after");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // And the queue goes on, through the skipped slot's next lap.
    for i in 0..10u8 {
        tx.send(&[i]).unwrap();
        assert!(rx.try_recv(&mut buf).unwrap());
        assert_eq!(buf, [i]);
    }
}

#[test]
fn a_message_being_written_by_a_live_sender_is_waited_for_not_skipped() {
    let fd = new_queue(4, 16);
    let (writer, rx) = (open(&fd), open(&fd));
    rx.state_word(0)
        .store(word(0, WRITING, writer.token), Ordering::SeqCst);
    rx.u64_at(OFF_TAIL).store(1, Ordering::SeqCst);
    let mut buf = Vec::new();
    assert!(!rx
        .recv_timeout(&mut buf, Duration::from_millis(100))
        .unwrap());
    assert_eq!(word_state(rx.state_word(0).load(Ordering::SeqCst)), WRITING);
}

#[test]
fn a_slot_whose_reader_died_is_freed_for_the_senders() {
    let fd = new_queue(2, 16);
    let (tx, rx) = (open(&fd), open(&fd));
    tx.send(b"x").unwrap();
    tx.send(b"y").unwrap();
    // A receiver claims position 0 for reading and dies.
    let dead = dead_token(&tx);
    tx.state_word(0)
        .store(word(0, READING, dead), Ordering::SeqCst);
    tx.u64_at(OFF_HEAD).store(1, Ordering::SeqCst);
    tx.send_timeout(b"z", Duration::from_secs(3)).unwrap();
    let mut buf = Vec::new();
    for want in [&b"y"[..], b"z"] {
        assert!(rx.try_recv(&mut buf).unwrap());
        assert_eq!(buf, want);
    }
}

#[test]
fn a_bad_header_is_refused_at_open() {
    let fd = new_queue(4, 64);
    let q = open(&fd);
    let base = q.map.ptr();
    // SAFETY: writing inside the header of our own mapping, as a hostile peer could.
    unsafe { base.add(OFF_CAPACITY).cast::<u32>().write_volatile(1 << 30) };
    assert!(matches!(
        Queue::open(fd.as_fd()),
        Err(QueueError::Geometry(_))
    ));
    assert!(matches!(
        read_stats(fd.as_fd()),
        Err(QueueError::Geometry(_))
    ));
    // SAFETY: as above.
    unsafe { base.add(OFF_MAGIC).cast::<u64>().write_volatile(0) };
    assert!(matches!(
        Queue::open(fd.as_fd()),
        Err(QueueError::Geometry(_))
    ));
    // Our own handle read the geometry at open and keeps working on it.
    q.try_send(b"still").unwrap();
}

/// xorshift64: reproducible pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_bytes_over_the_shared_memory_never_crash_or_hang_the_other_side() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..300 {
        let capacity = 1 + (rng.next() % 8) as u32;
        let max = 1 + (rng.next() % 200) as usize;
        let fd = new_queue(capacity, max);
        let (tx, rx) = (open(&fd), open(&fd));
        for i in 0..rng.next() % 6 {
            let _ = tx.try_send(&vec![i as u8; (i as usize * 13) % (max + 1)]);
        }
        // The hostile peer writes random bytes at random places (header and slots).
        let len = tx.map.len();
        let base = tx.map.ptr();
        for _ in 0..1 + rng.next() % 64 {
            let at = (rng.next() as usize) % len;
            let n = (1 + rng.next() as usize % 16).min(len - at);
            for k in 0..n {
                // SAFETY: inside our own mapping; the other handles only ever use atomics
                // and bounded copies on this memory.
                unsafe { base.add(at + k).write_volatile(rng.next() as u8) };
            }
        }
        // The other side: every call returns (with data, empty, full or an error), bounded.
        let t0 = Instant::now();
        let mut buf = Vec::new();
        for i in 0..20 {
            let _ = rx.try_recv(&mut buf);
            assert!(buf.len() <= max, "round {round}: {} > {max}", buf.len());
            let _ = tx.try_send(&vec![i; (i as usize) % (max + 1)]);
            let _ = rx.recv_timeout(&mut buf, Duration::from_millis(1));
            assert!(buf.len() <= max);
            let _ = tx.send_timeout(b"", Duration::from_millis(1));
            let _ = rx.stats();
            let _ = read_stats(fd.as_fd());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "round {round} took {:?}",
            t0.elapsed()
        );
    }
}

#[test]
fn counts_stay_exact_past_the_counter_table_and_across_dead_openers() {
    let fd = new_queue(1024, 16);
    let rx = open(&fd);
    let msg = [7u8; 10];
    // More senders than the table has entries: the last ones count in the shared counters.
    let senders: Vec<Queue> = (0..COUNTER_ENTRIES + 8).map(|_| open(&fd)).collect();
    assert!(rx.counters.is_some() && senders[0].counters.is_some());
    assert!(senders.last().is_some_and(|s| s.counters.is_none()));
    let mut sent = 0u64;
    for (i, s) in senders.iter().enumerate() {
        for _ in 0..=i {
            s.try_send(&msg).unwrap();
            sent += 1;
        }
    }
    let check = |sent: u64, received: u64| {
        for stats in [rx.stats(), read_stats(fd.as_fd()).unwrap()] {
            assert_eq!(
                (stats.sent_messages, stats.sent_bytes),
                (sent, sent * 10),
                "{stats:?}"
            );
            assert_eq!(
                (stats.received_messages, stats.received_bytes),
                (received, received * 10),
                "{stats:?}"
            );
        }
    };
    check(sent, 0);
    // Openers that went away leave their entries to new ones, and their counts to the total.
    let mut senders = senders;
    senders.drain(..5);
    let newcomers: Vec<Queue> = (0..5).map(|_| open(&fd)).collect();
    for n in &newcomers {
        assert!(n.counters.is_some(), "a dead opener's entry was not reused");
        n.try_send(&msg).unwrap();
        sent += 1;
    }
    check(sent, 0);
    let mut buf = Vec::new();
    for received in 1..=sent {
        assert!(rx.try_recv(&mut buf).unwrap());
        if received % 100 == 0 {
            check(sent, received);
        }
    }
    check(sent, sent);
}

#[test]
fn depth_is_zero_while_the_head_is_briefly_past_the_tail() {
    // A receiver may take a message and move the head on before its sender moves the tail.
    let fd = new_queue(8, 16);
    let q = open(&fd);
    q.u64_at(OFF_TAIL).store(5, Ordering::SeqCst);
    q.u64_at(OFF_HEAD).store(6, Ordering::SeqCst);
    assert_eq!(q.stats().depth, 0);
    q.u64_at(OFF_TAIL).store(9, Ordering::SeqCst);
    assert_eq!(q.stats().depth, 3);
}

#[test]
fn the_ring_index_is_the_remainder_for_every_capacity_and_position() {
    let mut capacities: Vec<u64> = vec![1, 2, 3, 5, 7, 8, 100, 255, 256, 1000, 65_537];
    capacities.extend([MAX_CAPACITY - 1, MAX_CAPACITY].map(u64::from));
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for cap in capacities {
        let magic = capacity_magic(cap);
        let edges = [
            0,
            1,
            cap - 1,
            cap,
            cap + 1,
            POS_MASK,
            u64::MAX - 1,
            u64::MAX,
        ];
        let random = (0..20_000).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        });
        for pos in edges.into_iter().chain(random) {
            assert_eq!(ring_index(pos, magic, cap), pos % cap, "{pos} % {cap}");
        }
    }
}

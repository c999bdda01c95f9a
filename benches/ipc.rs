//! `make bench-ipc`: hydra's queue against the kernel IPC a user would otherwise pick, between two
//! processes pinned to CPU 0 and CPU 1: one-way latency (half a ping-pong round trip; median and
//! p99) and one-way throughput, for 64 B, 1 KiB and 64 KiB messages; plus the floor, the time
//! one cache line takes from one core to the other. Prints a markdown table (and the targets'
//! verdicts); hack/bench-ipc.sh puts it in docs/benchmarks.md.
//!
//! Every payload carries its sequence number, checked on arrival: a transport that loses,
//! repeats or corrupts a message fails the run. `cargo bench --bench ipc -- latency` measures
//! only the floor and the spin queue's 64 B latency, `-- throughput` only the 64 B throughput of the
//! spin queue and the Unix stream socket.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hydra::ipc::queue::Queue;

const SIZES: [usize; 3] = [64, 1024, 65536];

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

fn check(ret: isize, what: &str) -> usize {
    if ret < 0 {
        panic!("{what}: {}", std::io::Error::last_os_error());
    }
    ret as usize
}

/// One direction of a transport.
trait End {
    fn send(&mut self, msg: &[u8]);
    /// Fills `buf` with the next message of `len` bytes.
    fn recv(&mut self, buf: &mut Vec<u8>, len: usize);
}

/// Byte streams (pipes, stream sockets): a message is `len` bytes read in full.
struct Stream(RawFd);

impl End for Stream {
    fn send(&mut self, msg: &[u8]) {
        let mut off = 0;
        while off < msg.len() {
            // SAFETY: write from a live buffer.
            off += check(
                unsafe { libc::write(self.0, msg[off..].as_ptr().cast(), msg.len() - off) },
                "write",
            );
        }
    }
    fn recv(&mut self, buf: &mut Vec<u8>, len: usize) {
        buf.resize(len, 0);
        let mut off = 0;
        while off < len {
            // SAFETY: read into a live buffer of len bytes.
            let n = check(
                unsafe { libc::read(self.0, buf[off..].as_mut_ptr().cast(), len - off) },
                "read",
            );
            assert!(n > 0, "stream closed");
            off += n;
        }
    }
}

/// Datagrams and message queues: a message is one send.
struct Dgram(RawFd);

impl End for Dgram {
    fn send(&mut self, msg: &[u8]) {
        // SAFETY: send from a live buffer.
        check(
            unsafe { libc::send(self.0, msg.as_ptr().cast(), msg.len(), 0) },
            "send",
        );
    }
    fn recv(&mut self, buf: &mut Vec<u8>, len: usize) {
        buf.resize(len, 0);
        // SAFETY: recv into a live buffer.
        let n = check(
            unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), len, 0) },
            "recv",
        );
        assert_eq!(n, len, "short datagram");
    }
}

struct Mq(libc::mqd_t);

impl End for Mq {
    fn send(&mut self, msg: &[u8]) {
        // SAFETY: mq_send from a live buffer.
        check(
            unsafe { libc::mq_send(self.0, msg.as_ptr().cast(), msg.len(), 0) } as isize,
            "mq_send",
        );
    }
    fn recv(&mut self, buf: &mut Vec<u8>, len: usize) {
        buf.resize(len.max(8192), 0);
        // SAFETY: mq_receive into a buffer of at least the queue's message size.
        let n = check(
            unsafe {
                libc::mq_receive(
                    self.0,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    std::ptr::null_mut(),
                )
            },
            "mq_receive",
        );
        buf.truncate(n);
    }
}

struct Hydra {
    queue: Queue,
    spin: bool,
}

impl End for Hydra {
    fn send(&mut self, msg: &[u8]) {
        let sent = if self.spin {
            self.queue.send_spin(msg)
        } else {
            self.queue.send(msg)
        };
        sent.expect("queue send");
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _len: usize) {
        let got = if self.spin {
            self.queue.recv_spin(buf)
        } else {
            self.queue.recv(buf)
        };
        got.expect("queue recv");
    }
}

/// A transport: how to make the two directions, in the parent before the fork, as
/// (parent's ends, child's ends) = ((to child, from child), (to parent, from parent)).
type Pair = (Box<dyn End>, Box<dyn End>);

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    HydraSpin,
    HydraBlocking,
    Pipe,
    UnixStream,
    UnixDgram,
    PosixMq,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::HydraSpin => "hydra queue, spin",
            Kind::HydraBlocking => "hydra queue, blocking (futex)",
            Kind::Pipe => "pipe",
            Kind::UnixStream => "Unix stream socket",
            Kind::UnixDgram => "Unix datagram socket",
            Kind::PosixMq => "POSIX message queue",
        }
    }

    /// Why this size cannot be measured, if it cannot.
    fn unsupported(self, size: usize) -> Option<String> {
        if self == Kind::PosixMq {
            let max: usize = std::fs::read_to_string("/proc/sys/fs/mqueue/msgsize_max")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(8192);
            if size > max {
                return Some(format!("n/a (msgsize_max {max})"));
            }
        }
        None
    }

    /// (parent side: send, recv), (child side: send, recv).
    fn make(self, size: usize) -> (Pair, Pair) {
        match self {
            Kind::HydraSpin | Kind::HydraBlocking => {
                let spin = self == Kind::HydraSpin;
                let a = Queue::create("bench-a", 256, size).expect("queue");
                let b = Queue::create("bench-b", 256, size).expect("queue");
                let open = |fd: &OwnedFd| -> Box<dyn End> {
                    Box::new(Hydra {
                        queue: Queue::open(fd.as_fd()).expect("open"),
                        spin,
                    })
                };
                // Leaked so the fds outlive both sides (each side opens its own handle).
                let pair = ((open(&a), open(&b)), (open(&b), open(&a)));
                std::mem::forget((a, b));
                pair
            }
            Kind::Pipe => {
                let (a_r, a_w) = pipe();
                let (b_r, b_w) = pipe();
                (
                    (Box::new(Stream(a_w)), Box::new(Stream(b_r))),
                    (Box::new(Stream(b_w)), Box::new(Stream(a_r))),
                )
            }
            Kind::UnixStream | Kind::UnixDgram => {
                let kind = if self == Kind::UnixStream {
                    libc::SOCK_STREAM
                } else {
                    libc::SOCK_DGRAM
                };
                let (p, c) = socketpair(kind);
                if self == Kind::UnixStream {
                    (
                        (Box::new(Stream(p)), Box::new(Stream(p))),
                        (Box::new(Stream(c)), Box::new(Stream(c))),
                    )
                } else {
                    (
                        (Box::new(Dgram(p)), Box::new(Dgram(p))),
                        (Box::new(Dgram(c)), Box::new(Dgram(c))),
                    )
                }
            }
            Kind::PosixMq => {
                let a = mq(&format!("/hydra-bench-a-{}", std::process::id()), size);
                let b = mq(&format!("/hydra-bench-b-{}", std::process::id()), size);
                (
                    (Box::new(Mq(a)), Box::new(Mq(b))),
                    (Box::new(Mq(b)), Box::new(Mq(a))),
                )
            }
        }
    }
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe fills two fds.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) } as isize, "pipe");
    // 64 KiB messages fit whole.
    // SAFETY: fcntl on our pipe.
    unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20) };
    (fds[0], fds[1])
}

fn socketpair(kind: libc::c_int) -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds.
    check(
        unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) } as isize,
        "socketpair",
    );
    let big: libc::c_int = 4 << 20;
    for fd in fds {
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            // SAFETY: setsockopt with an int (capped by the host's limits; not changed here).
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&big as *const libc::c_int).cast(),
                    4,
                )
            };
        }
    }
    (fds[0], fds[1])
}

fn mq(name: &str, size: usize) -> libc::mqd_t {
    let c = CString::new(name).expect("mq name");
    let max: libc::c_long = std::fs::read_to_string("/proc/sys/fs/mqueue/msg_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(10);
    // SAFETY: mq_attr is plain data.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = max;
    attr.mq_msgsize = size.max(8) as libc::c_long;
    // SAFETY: mq_open with a NUL-terminated name and an attr on this stack; unlinked at once,
    // the descriptor keeps it.
    let q = unsafe {
        libc::mq_open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
            &mut attr as *mut libc::mq_attr,
        )
    };
    check(q as isize, "mq_open");
    // SAFETY: as above.
    unsafe { libc::mq_unlink(c.as_ptr()) };
    q
}

/// The messages a sender sends: a few prebuilt bodies, used in turn, each stamped with its
/// sequence number just before it goes. Building a message per send (an allocation and a fill)
/// or reading it from an array of all of them (megabytes: cache misses) would be time the
/// sender spends on its own memory, not in the transport.
struct Messages {
    pool: Vec<Vec<u8>>,
}

/// How many bodies `Messages` keeps: their fill byte is the sequence number modulo this.
const POOL: u64 = 16;

impl Messages {
    fn new(size: usize) -> Messages {
        let pool = (0..POOL)
            .map(|i| {
                let mut m = vec![fill(i); size];
                m[..8].fill(0);
                m
            })
            .collect();
        Messages { pool }
    }

    fn get(&mut self, seq: u64) -> &[u8] {
        let m = &mut self.pool[(seq % POOL) as usize];
        m[..8].copy_from_slice(&seq.to_le_bytes());
        m
    }
}

fn fill(seq: u64) -> u8 {
    (seq % POOL) as u8 + 1
}

/// The sequence number of message `m`, after checking its size and its body.
fn seq_of(m: &[u8], size: usize) -> u64 {
    assert_eq!(m.len(), size, "message of the wrong size");
    let seq = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
    assert!(
        m[8..].iter().all(|&b| b == fill(seq)),
        "message {seq} corrupted"
    );
    seq
}

/// Runs `child` in a forked process pinned to CPU 1 (this one on CPU 0); waits for it.
fn with_child(child: impl FnOnce()) -> impl FnOnce() {
    // SAFETY: the bench is single-threaded; the child runs `child` and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        pin(1);
        child();
        // SAFETY: leave without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    pin(0);
    move || {
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child failed"
        );
    }
}

struct Figures {
    median_ns: f64,
    p99_ns: f64,
    msgs_per_s: f64,
    mb_per_s: f64,
}

fn measure(kind: Kind, size: usize) -> Figures {
    let (rounds, stream) = match size {
        64 => (100_000, 1_000_000),
        1024 => (50_000, 500_000),
        _ => (5_000, 20_000),
    };
    let (median_ns, p99_ns) = latency(kind, size, rounds);
    let (msgs_per_s, mb_per_s) = throughput(kind, size, stream);
    Figures {
        median_ns,
        p99_ns,
        msgs_per_s,
        mb_per_s,
    }
}

/// Round trips timed together for the median: a clock read costs ~20 ns here, as much as a
/// cache-line transfer, so timing each round trip alone would put it into every sample.
const BATCH: u64 = 100;

/// One-way latency, median and p99: half a ping-pong round trip. The median comes from batches
/// of `BATCH` round trips timed together (`rounds / BATCH` samples), the p99 from `rounds`
/// round trips timed one by one (a tail needs single samples; the clock read is in it).
fn latency(kind: Kind, size: usize, rounds: u64) -> (f64, f64) {
    const WARM_UP: u64 = 1000;
    let total = WARM_UP + 2 * rounds;
    let ((mut to_child, mut from_child), (mut to_parent, mut from_parent)) = kind.make(size);
    let wait = with_child(move || {
        let mut buf = Vec::new();
        for seq in 0..total {
            from_parent.recv(&mut buf, size);
            // Echo first, check after: the check is the bench's work, not the transport's.
            to_parent.send(&buf);
            assert_eq!(seq_of(&buf, size), seq);
        }
    });
    let mut msgs = Messages::new(size);
    let mut buf = Vec::new();
    let mut round_trip = |seq: u64| {
        to_child.send(msgs.get(seq));
        from_child.recv(&mut buf, size);
    };
    for seq in 0..WARM_UP {
        round_trip(seq);
    }
    let mut singles = Vec::with_capacity(rounds as usize);
    for seq in WARM_UP..WARM_UP + rounds {
        let t0 = Instant::now();
        round_trip(seq);
        singles.push(t0.elapsed().as_nanos() as f64);
    }
    let mut batches = Vec::with_capacity((rounds / BATCH) as usize);
    for first in (WARM_UP + rounds..total).step_by(BATCH as usize) {
        let t0 = Instant::now();
        for seq in first..(first + BATCH).min(total) {
            round_trip(seq);
        }
        batches.push(t0.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    wait();
    drop((to_child, from_child));
    (median(batches) / 2.0, percentile(singles, 99) / 2.0)
}

/// Throughput: a stream one way, then one reply when all arrived.
fn throughput(kind: Kind, size: usize, stream: u64) -> (f64, f64) {
    let mut buf = Vec::new();
    let ((mut to_child, mut from_child), (mut to_parent, mut from_parent)) = kind.make(size);
    let wait = with_child(move || {
        let mut buf = Vec::new();
        for seq in 0..stream {
            from_parent.recv(&mut buf, size);
            assert_eq!(seq_of(&buf, size), seq, "lost or reordered");
        }
        to_parent.send(Messages::new(size).get(u64::MAX));
    });
    let mut msgs = Messages::new(size);
    let t0 = Instant::now();
    for seq in 0..stream {
        to_child.send(msgs.get(seq));
    }
    from_child.recv(&mut buf, size);
    let secs = t0.elapsed().as_secs_f64();
    wait();
    (
        stream as f64 / secs,
        stream as f64 * size as f64 / secs / 1e6,
    )
}

/// The floor: a cache line bounced between the two cores (one-way = half a round trip).
fn cache_line_ns() -> f64 {
    // SAFETY: an anonymous shared mapping of one page, unmapped by the process exits.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    // SAFETY: the page is aligned, zeroed and lives as long as both processes.
    let word: &'static AtomicU64 = unsafe { &*(page as *const AtomicU64) };
    const ROUNDS: u64 = 1_000_000;
    let wait = with_child(move || {
        for i in 0..ROUNDS {
            while word.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            word.store(2 * i + 2, Ordering::Release);
        }
    });
    let t0 = Instant::now();
    for i in 0..ROUNDS {
        word.store(2 * i + 1, Ordering::Release);
        while word.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let ns = t0.elapsed().as_nanos() as f64 / ROUNDS as f64 / 2.0;
    wait();
    ns
}

/// How many times the figures behind the latency and throughput targets are measured, in turn.
const REPEATS: usize = 5;

/// The figures the targets compare, each the median of `REPEATS` runs taken in turn: the floor,
/// the spin queue's 64 B latency, and the 64 B throughput of the spin queue and of the Unix
/// stream socket. Each of them moves with where the hypervisor runs the two vCPUs, which
/// changes from minute to minute; one run of each, minutes apart, can compare two different
/// machines.
struct Headline {
    floor: f64,
    /// Each run's floor and the spin queue's 64 B latency measured right after it: the pairs
    /// the latency target is judged on, as the placement may change between two runs.
    pairs: Vec<(f64, f64)>,
    spin_latency: (f64, f64),
    spin_rate: (f64, f64),
    unix_rate: (f64, f64),
}

impl Headline {
    fn measure() -> Headline {
        let (mut floor, mut spin_latency, mut spin_rate, mut unix_rate) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..REPEATS {
            floor.push(cache_line_ns());
            spin_latency.push(latency(Kind::HydraSpin, 64, 100_000));
            spin_rate.push(throughput(Kind::HydraSpin, 64, 1_000_000));
            unix_rate.push(throughput(Kind::UnixStream, 64, 1_000_000));
        }
        Headline {
            pairs: floor
                .iter()
                .zip(&spin_latency)
                .map(|(&f, &(l, _))| (f, l))
                .collect(),
            floor: median(floor),
            spin_latency: median_pair(&spin_latency),
            spin_rate: median_pair(&spin_rate),
            unix_rate: median_pair(&unix_rate),
        }
    }

    fn spin(&self) -> Figures {
        Figures {
            median_ns: self.spin_latency.0,
            p99_ns: self.spin_latency.1,
            msgs_per_s: self.spin_rate.0,
            mb_per_s: self.spin_rate.1,
        }
    }

    /// The Unix stream socket at 64 B: its throughput from here, its latency measured as
    /// every other row's.
    fn unix(&self) -> Figures {
        let (median_ns, p99_ns) = latency(Kind::UnixStream, 64, 100_000);
        Figures {
            median_ns,
            p99_ns,
            msgs_per_s: self.unix_rate.0,
            mb_per_s: self.unix_rate.1,
        }
    }
}

/// The value `p` percent of `v` lie below (`v` not empty).
fn percentile(mut v: Vec<f64>, p: usize) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() * p / 100]
}

fn median(v: Vec<f64>) -> f64 {
    percentile(v, 50)
}

/// The median of each member of the pairs, apart.
fn median_pair(v: &[(f64, f64)]) -> (f64, f64) {
    (
        median(v.iter().map(|p| p.0).collect()),
        median(v.iter().map(|p| p.1).collect()),
    )
}

/// Nanoseconds as microseconds, to the nanosecond below 1 µs (where the queue's figures are).
fn micros(ns: f64) -> String {
    if ns < 1000.0 {
        format!("{:.3}", ns / 1000.0)
    } else {
        format!("{:.2}", ns / 1000.0)
    }
}

/// `ipc latency`: only the floor and the spin queue's 64 B latency, five times (to see the
/// effect of a change to the queue's fast path quickly, without the whole table).
fn latency_only() {
    for _ in 0..5 {
        let floor = cache_line_ns();
        let (median, p99) = latency(Kind::HydraSpin, 64, 100_000);
        println!(
            "floor {floor:.1} ns, hydra spin 64 B median {median:.1} ns (p99 {p99:.1}): {:.2} ×",
            median / floor
        );
    }
}

/// `ipc throughput`: only the 64 B streams of the spin queue and the Unix stream socket, five
/// times.
fn throughput_only() {
    for _ in 0..5 {
        let (hydra, _) = throughput(Kind::HydraSpin, 64, 1_000_000);
        let (unix, _) = throughput(Kind::UnixStream, 64, 1_000_000);
        println!(
            "64 B msgs/s: hydra spin {hydra:.0}, Unix stream socket {unix:.0}: {:.1} ×",
            hydra / unix
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "latency") {
        return latency_only();
    }
    if std::env::args().any(|a| a == "throughput") {
        return throughput_only();
    }
    let kinds = [
        Kind::HydraSpin,
        Kind::HydraBlocking,
        Kind::Pipe,
        Kind::UnixStream,
        Kind::UnixDgram,
        Kind::PosixMq,
    ];
    let headline = Headline::measure();
    let floor = headline.floor;
    println!("| transport | size | one-way latency median µs | p99 µs | msgs/s | MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| cache line core 0 → core 1 (the floor) | 8 B | {:.3} | | | |",
        floor / 1000.0
    );
    let mut results = Vec::new();
    for size in SIZES {
        for kind in kinds {
            let label = if size >= 1024 {
                format!("{} KiB", size / 1024)
            } else {
                format!("{size} B")
            };
            if let Some(why) = kind.unsupported(size) {
                println!("| {} | {label} | {why} | | | |", kind.name());
                continue;
            }
            let f = match (kind, size) {
                (Kind::HydraSpin, 64) => headline.spin(),
                (Kind::UnixStream, 64) => headline.unix(),
                _ => measure(kind, size),
            };
            println!(
                "| {} | {label} | {} | {} | {:.0} | {:.0} |",
                kind.name(),
                micros(f.median_ns),
                micros(f.p99_ns),
                f.msgs_per_s,
                f.mb_per_s
            );
            results.push((kind, size, f));
        }
    }
    let get = |k: Kind, s: usize| {
        results
            .iter()
            .find(|(kind, size, _)| *kind == k && *size == s)
            .map(|(_, _, f)| f)
            .expect("measured")
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let spin = get(Kind::HydraSpin, 64);
    let blocking = get(Kind::HydraBlocking, 64);
    let unix = get(Kind::UnixStream, 64);
    let ratio = spin.msgs_per_s / unix.msgs_per_s;
    // Each run against the floor measured just before it; judged on the median, as every
    // figure of the table is a median.
    let ratios: Vec<f64> = headline.pairs.iter().map(|&(f, l)| l / f).collect();
    let worst = ratios.iter().copied().fold(0.0, f64::max);
    let typical = median(ratios);
    let pairs: Vec<String> = headline
        .pairs
        .iter()
        .map(|&(f, l)| format!("{l:.1}/{f:.1} ns = {:.2} ×", l / f))
        .collect();
    println!();
    println!(
        "- Targets (issue 5): 64 B throughput ≥ 10 × the Unix stream socket's: {ratio:.1} ×, {}; \
         blocking round trip ≤ the Unix socket's: {:.2} µs against {:.2} µs, {}; busy-poll one-way \
         latency within 3 × the core-to-core floor: {typical:.2} × (median; at worst {worst:.2} ×) \
         over the {} runs, each against the floor measured just before it ({}), {}.",
        verdict(ratio >= 10.0),
        2.0 * blocking.median_ns / 1000.0,
        2.0 * unix.median_ns / 1000.0,
        verdict(blocking.median_ns <= unix.median_ns),
        pairs.len(),
        pairs.join("; "),
        verdict(typical <= 3.0),
    );
}

//! The rootless PortForwarder (rootlesskit's "builtin" design): hydra listens on the host ports
//! itself; a small helper that joined the process's user and network namespaces hands hydra
//! fresh sockets of that namespace over SCM_RIGHTS, hydra connects them to 127.0.0.1:PORT there
//! (a socket stays in the namespace it was made in) and copies bytes both ways. No tun device,
//! no veth, no privilege; the process's namespace keeps only `lo`.
//!
//! As root it serves the IPv6 side of the mappings: the process's link is IPv4 only, `::1`
//! cannot be DNATed off the host (IPv6 has no `route_localnet`), and forwarding IPv6 from
//! outside would need the global `net.ipv6.conf.all.forwarding`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::firewall::Forward;
use super::portstats::Traffic;
use crate::config::Protocol;

#[derive(Debug, Error)]
pub enum ForwardError {
    #[error("host port {port} is privileged (below net.ipv4.ip_unprivileged_port_start = {start}) and hydra runs rootless; map a port of {start} or above")]
    Privileged { port: String, start: u32 },
    #[error("host port {0} is already in use on the host")]
    Busy(String),
    #[error("listening on host port {port}: {source}")]
    Listen {
        port: String,
        source: std::io::Error,
    },
    #[error("starting the socket helper in the process's namespaces: {0}")]
    Helper(std::io::Error),
}

/// How often blocked threads look whether the forwarder is stopping.
const TICK: Duration = Duration::from_millis(200);
/// A UDP flow with no traffic for this long is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);

fn unprivileged_port_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// A bound host socket of one mapping.
pub enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// The host addresses hydra itself listens on for mapping `f`: all of them rootless; as root
/// (`kernel`: nftables serves IPv4) the IPv6 ones only. A mapping without a host address is
/// served on `0.0.0.0` and, where the host has IPv6, on `[::]`.
pub fn listen_addresses(f: &Forward, kernel: bool, host_ipv6: bool) -> Vec<SocketAddr> {
    let at = |ip: IpAddr| SocketAddr::new(ip, f.host_port);
    match f.host_ip {
        Some(ip @ IpAddr::V6(_)) => vec![at(ip)],
        Some(ip @ IpAddr::V4(_)) if !kernel => vec![at(ip)],
        Some(IpAddr::V4(_)) => Vec::new(),
        None => {
            let mut out = Vec::new();
            if !kernel {
                out.push(at(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
            }
            if host_ipv6 {
                out.push(at(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)));
            }
            out
        }
    }
}

/// Binds the host ports hydra serves itself (see `listen_addresses`) now, so a busy or
/// privileged port is reported before the process starts; each with its mapping's index.
pub fn bind(forwards: &[Forward], kernel: bool) -> Result<Vec<(usize, Listener)>, ForwardError> {
    let host_ipv6 = super::ports::host_has_ipv6();
    let mut out = Vec::new();
    for (i, f) in forwards.iter().enumerate() {
        for addr in listen_addresses(f, kernel, host_ipv6) {
            // As the user wrote it, but naming the IPv6 side when that is what failed.
            let shown = match (f.host_ip, addr) {
                (None, SocketAddr::V4(_)) => None,
                _ => Some(addr.ip()),
            };
            let port = super::setup::host_port_text(f.protocol, shown, f.host_port);
            let fd =
                super::ports::bind(f.protocol, addr).map_err(|source| match source.kind() {
                    std::io::ErrorKind::AddrInUse => ForwardError::Busy(port.clone()),
                    std::io::ErrorKind::PermissionDenied => ForwardError::Privileged {
                        port: super::setup::host_port_text(f.protocol, f.host_ip, f.host_port),
                        start: unprivileged_port_start(),
                    },
                    _ => ForwardError::Listen {
                        port: port.clone(),
                        source,
                    },
                })?;
            out.push((
                i,
                match f.protocol {
                    Protocol::Tcp => Listener::Tcp(TcpListener::from(fd)),
                    Protocol::Udp => Listener::Udp(UdpSocket::from(fd)),
                },
            ));
        }
    }
    Ok(out)
}

/// The helper in the process's namespaces that hands out sockets made there.
struct SocketSource {
    channel: OwnedFd,
    helper: libc::pid_t,
}

/// Helper side: joins the namespaces of `pidfd`, then answers each request byte (`t`cp or
/// `u`dp) with a new socket. Runs in a forked child of a possibly multithreaded hydra, so it
/// uses raw system calls on stack buffers only.
fn helper_main(pidfd: RawFd, channel: RawFd) -> ! {
    // SAFETY: plain system calls on fds and stack memory; the process only ever _exits.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // Nothing of the process's may inspect it (it is outside its pid namespace anyway).
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
        // The answer to "did you get in?" is the first byte: hydra waits for it before letting
        // the process go (once going, the process turns non-dumpable and setns would fail).
        if libc::setns(pidfd, libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
            let errno = *libc::__errno_location() as u8;
            libc::send(channel, (&errno as *const u8).cast(), 1, libc::MSG_NOSIGNAL);
            libc::_exit(1);
        }
        let ready = 0u8;
        if libc::send(channel, (&ready as *const u8).cast(), 1, libc::MSG_NOSIGNAL) != 1 {
            libc::_exit(1);
        }
        // Keep only the channel: hydra's other fds (listeners, state files) stay with hydra.
        let channel = if libc::dup3(channel, 0, libc::O_CLOEXEC) == 0 {
            0
        } else {
            libc::_exit(1)
        };
        libc::syscall(libc::SYS_close_range, 1u32, u32::MAX, 0u32);
        loop {
            let mut kind = 0u8;
            if libc::recv(channel, (&mut kind as *mut u8).cast(), 1, 0) != 1 {
                libc::_exit(0);
            }
            let sock_type = if kind == b'u' {
                libc::SOCK_DGRAM
            } else {
                libc::SOCK_STREAM
            };
            let sock = libc::socket(libc::AF_INET, sock_type | libc::SOCK_CLOEXEC, 0);
            // One byte of data carries the fd (or, alone, says the socket call failed).
            let mut byte = if sock < 0 { b'!' } else { b'+' };
            let mut iov = libc::iovec {
                iov_base: (&mut byte as *mut u8).cast(),
                iov_len: 1,
            };
            let mut control = [0u64; 4]; // aligned room for one cmsghdr + an int
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if sock >= 0 {
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(4) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), sock);
            }
            let sent = libc::sendmsg(channel, &msg, libc::MSG_NOSIGNAL);
            if sock >= 0 {
                libc::close(sock);
            }
            if sent != 1 {
                libc::_exit(0);
            }
        }
    }
}

impl SocketSource {
    /// Forks the helper for the process `pidfd` refers to.
    fn start(pidfd: BorrowedFd<'_>) -> Result<SocketSource, ForwardError> {
        let mut pair = [0; 2];
        // SAFETY: socketpair fills the two fds we then own.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        } != 0
        {
            return Err(ForwardError::Helper(std::io::Error::last_os_error()));
        }
        // SAFETY: both fds were just created and are owned here.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
        // SAFETY: the child runs helper_main only (no allocation, no locks) and never returns.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => Err(ForwardError::Helper(std::io::Error::last_os_error())),
            0 => helper_main(pidfd.as_raw_fd(), theirs.as_raw_fd()),
            pid => {
                drop(theirs);
                let source = SocketSource {
                    channel: ours,
                    helper: pid,
                };
                let mut answer = 0xffu8;
                // SAFETY: recv into one byte on this stack from our own socket.
                let n = unsafe {
                    libc::recv(
                        source.channel.as_raw_fd(),
                        (&mut answer as *mut u8).cast(),
                        1,
                        0,
                    )
                };
                match (n, answer) {
                    (1, 0) => Ok(source),
                    (1, errno) => Err(ForwardError::Helper(std::io::Error::from_raw_os_error(
                        errno.into(),
                    ))),
                    _ => Err(ForwardError::Helper(std::io::Error::other(
                        "the helper ended before joining the process's namespaces",
                    ))),
                }
            }
        }
    }

    /// A new socket of the process's network namespace.
    fn socket(&self, protocol: Protocol) -> std::io::Result<OwnedFd> {
        let kind = match protocol {
            Protocol::Tcp => b't',
            Protocol::Udp => b'u',
        };
        let fd = self.channel.as_raw_fd();
        // SAFETY: send/recvmsg on our own socket with buffers on this stack.
        unsafe {
            if libc::send(fd, (&kind as *const u8).cast(), 1, libc::MSG_NOSIGNAL) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            let mut byte = 0u8;
            let mut iov = libc::iovec {
                iov_base: (&mut byte as *mut u8).cast(),
                iov_len: 1,
            };
            let mut control = [0u64; 4];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            if libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) != 1 || byte != b'+' {
                return Err(std::io::Error::other("the socket helper gave no socket"));
            }
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
                return Err(std::io::Error::other("the socket helper gave no socket"));
            }
            let sock = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
            Ok(OwnedFd::from_raw_fd(sock))
        }
    }
}

/// A new socket of the network namespace of the process `pidfd` refers to, made by a
/// short-lived thread that joins it (root may join any namespace at any time; the caller's own
/// namespace never changes).
fn socket_in(pidfd: BorrowedFd<'_>, protocol: Protocol) -> std::io::Result<OwnedFd> {
    let fd = pidfd.as_raw_fd();
    let kind = match protocol {
        Protocol::Tcp => libc::SOCK_STREAM,
        Protocol::Udp => libc::SOCK_DGRAM,
    };
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: setns changes this thread only; socket returns a new fd we own.
                unsafe {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let sock = libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0);
                    if sock < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(OwnedFd::from_raw_fd(sock))
                }
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    })
}

/// Where a process's sockets come from.
enum Source {
    /// Rootless: the helper in its user and network namespaces.
    Helper(SocketSource),
    /// Root: its pidfd (a dup), joined by a thread per socket.
    Netns(OwnedFd),
}

impl Source {
    /// A socket of the process's namespace connected to 127.0.0.1:`port` there.
    fn connect(&self, protocol: Protocol, port: u16) -> std::io::Result<OwnedFd> {
        let sock = match self {
            Source::Helper(helper) => helper.socket(protocol)?,
            Source::Netns(pidfd) => socket_in(pidfd.as_fd(), protocol)?,
        };
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: connect on our socket with a sockaddr_in on this stack.
        let rc = unsafe {
            libc::connect(
                sock.as_raw_fd(),
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(sock)
    }
}

impl Drop for SocketSource {
    fn drop(&mut self) {
        // SAFETY: the helper is our child; closing its channel makes it exit, then we reap it.
        unsafe {
            libc::shutdown(self.channel.as_raw_fd(), libc::SHUT_RDWR);
            let mut status = 0;
            libc::waitpid(self.helper, &mut status, 0);
        }
    }
}

/// The counters of one mapping, shared with its threads.
#[derive(Debug, Default)]
struct Counters {
    pub connections: AtomicU64,
    pub active: AtomicU64,
    pub in_packets: AtomicU64,
    pub in_bytes: AtomicU64,
    pub out_packets: AtomicU64,
    pub out_bytes: AtomicU64,
}

impl Counters {
    fn add(&self, inbound: bool, bytes: usize) {
        let (p, b) = if inbound {
            (&self.in_packets, &self.in_bytes)
        } else {
            (&self.out_packets, &self.out_bytes)
        };
        p.fetch_add(1, Ordering::Relaxed);
        b.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// (connections, active, received, sent) as `hydra ports` shows them.
    pub fn read(&self) -> (u64, u64, Traffic, Traffic) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            get(&self.connections),
            get(&self.active),
            Traffic {
                packets: get(&self.in_packets),
                bytes: get(&self.in_bytes),
            },
            Traffic {
                packets: get(&self.out_packets),
                bytes: get(&self.out_bytes),
            },
        )
    }
}

/// Running forwarders of one process; stops (and joins its threads) on drop. Connections
/// already open end with the process (their peer sockets live in its namespace).
struct Forwarder {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The listeners' fds, shut down on drop so their threads wake at once.
    listening: Vec<RawFd>,
}

/// The socket helpers of a container's processes, by process index (a process not running has
/// none); a mapping spreads new connections over the targets that have one.
#[derive(Clone, Default)]
struct Sources {
    helpers: Arc<Mutex<Vec<Option<Source>>>>,
}

impl Sources {
    fn new(processes: usize) -> Sources {
        Sources {
            helpers: Arc::new(Mutex::new((0..processes).map(|_| None).collect())),
        }
    }

    /// Process `index` started (`Some`) or ended (`None`; its helper exits).
    fn set(&self, index: usize, helper: Option<Source>) {
        if let Ok(mut helpers) = self.helpers.lock() {
            if let Some(slot) = helpers.get_mut(index) {
                *slot = helper;
            }
        }
    }

    /// A socket connected to 127.0.0.1:`port` in the next running target (round robin).
    fn connect(
        &self,
        targets: &[usize],
        next: &AtomicU64,
        protocol: Protocol,
        port: u16,
    ) -> std::io::Result<OwnedFd> {
        let helpers = self
            .helpers
            .lock()
            .map_err(|_| std::io::Error::other("socket helpers poisoned"))?;
        let running: Vec<&Source> = targets
            .iter()
            .filter_map(|&t| helpers.get(t).and_then(Option::as_ref))
            .collect();
        if running.is_empty() {
            return Err(std::io::Error::from(std::io::ErrorKind::NotConnected));
        }
        let pick = next.fetch_add(1, Ordering::Relaxed) as usize % running.len();
        running[pick].connect(protocol, port)
    }
}

/// Where one mapping's new connections go.
struct Route {
    sources: Sources,
    targets: Vec<usize>,
    port: u16,
    next: AtomicU64,
}

impl Route {
    fn connect(&self, protocol: Protocol) -> std::io::Result<OwnedFd> {
        self.sources
            .connect(&self.targets, &self.next, protocol, self.port)
    }
}

/// Copies `from` → `to` until EOF, counting, then half-closes `to`.
fn pump(mut from: TcpStream, mut to: TcpStream, counters: Arc<Counters>, inbound: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                counters.add(inbound, n);
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn serve_tcp(listener: TcpListener, route: Route, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut fds = [libc::pollfd {
                    fd: listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                }];
                // SAFETY: poll on one fd we own, for at most TICK.
                unsafe { libc::poll(fds.as_mut_ptr(), 1, TICK.as_millis() as i32) };
                continue;
            }
            Err(_) => continue,
        };
        let _ = client.set_nonblocking(false);
        let inner = match route.connect(Protocol::Tcp) {
            Ok(fd) => TcpStream::from(fd),
            Err(_) => continue, // nothing listens inside: the client sees the connection close
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        counters.active.fetch_add(1, Ordering::Relaxed);
        let (Ok(client2), Ok(inner2)) = (client.try_clone(), inner.try_clone()) else {
            continue;
        };
        let c_in = counters.clone();
        let c_out = counters.clone();
        std::thread::spawn(move || {
            let back = std::thread::spawn(move || pump(inner2, client2, c_out, false));
            pump(client, inner, c_in.clone(), true);
            let _ = back.join();
            c_in.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Sends the process's answers on one UDP flow back to its client until the flow is forgotten
/// (the flow table holds the only other reference to its socket).
fn relay_replies(
    reply: Arc<UdpSocket>,
    host: Arc<UdpSocket>,
    client: SocketAddr,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) && Arc::strong_count(&reply) > 1 {
        if let Ok(n) = reply.recv(&mut buf) {
            if host.send_to(&buf[..n], client).is_ok() {
                counters.add(false, n);
            }
        }
    }
}

fn serve_udp(host: UdpSocket, route: Route, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    let host = Arc::new(host);
    let _ = host.set_read_timeout(Some(TICK));
    let mut flows: HashMap<SocketAddr, (Arc<UdpSocket>, Instant)> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        flows.retain(|_, (_, seen)| seen.elapsed() < UDP_IDLE);
        counters.active.store(flows.len() as u64, Ordering::Relaxed);
        let Ok((n, client)) = host.recv_from(&mut buf) else {
            continue;
        };
        let flow = match flows.entry(client) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let inner = match route.connect(Protocol::Udp) {
                    Ok(fd) => Arc::new(UdpSocket::from(fd)),
                    Err(_) => continue,
                };
                let _ = inner.set_read_timeout(Some(TICK));
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let (reply, host2, c, stop2) =
                    (inner.clone(), host.clone(), counters.clone(), stop.clone());
                std::thread::spawn(move || relay_replies(reply, host2, client, c, stop2));
                v.insert((inner, Instant::now()))
            }
        };
        flow.1 = Instant::now();
        if flow.0.send(&buf[..n]).is_ok() {
            counters.add(true, n);
        }
    }
}

impl Forwarder {
    /// Starts serving `listeners` (each with its forward's index) into the namespaces of the
    /// forwards' target processes, through `sources`; each mapping's counters are `counters[i]`,
    /// also published to `stats` (see `publish`) twice a second.
    fn start(
        forwards: &[Forward],
        listeners: Vec<(usize, Listener)>,
        sources: &Sources,
        counters: &[Arc<Counters>],
        stats: PathBuf,
    ) -> Forwarder {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let (all, stop2) = (counters.to_vec(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                publish(&stats, &all);
                // Unparked by drop.
                std::thread::park_timeout(Duration::from_millis(500));
            }
        }));
        let listening = listeners
            .iter()
            .map(|(_, l)| match l {
                Listener::Tcp(l) => l.as_raw_fd(),
                Listener::Udp(u) => u.as_raw_fd(),
            })
            .collect();
        for (i, listener) in listeners {
            let (Some(f), Some(c)) = (forwards.get(i), counters.get(i)) else {
                continue;
            };
            let route = Route {
                sources: sources.clone(),
                targets: f.targets.clone(),
                port: f.port,
                next: AtomicU64::new(0),
            };
            let (c, stop) = (c.clone(), stop.clone());
            threads.push(std::thread::spawn(move || match listener {
                Listener::Tcp(l) => serve_tcp(l, route, c, stop),
                Listener::Udp(u) => serve_udp(u, route, c, stop),
            }));
        }
        Forwarder {
            stop,
            threads,
            listening,
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A shut-down socket wakes its poll or recv at once, so stopping takes no tick. The
        // fds are still open: their threads own them until joined.
        for &fd in &self.listening {
            // SAFETY: shutdown on an fd that stays open until the threads below are joined.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        for t in &self.threads {
            t.thread().unpark();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The port mappings hydra serves itself (all of them rootless, the IPv6 side as root): its
/// forwarder, and the socket helper of each running process (`attach` at its start, `detach`
/// at its end). Stops on drop.
pub struct Ports {
    sources: Sources,
    /// Rootless: processes are reached through a helper in their user namespace.
    helpers: bool,
    _forwarder: Forwarder,
}

impl Ports {
    /// Serves `forwards` from `listeners` (with their forward's index) into `processes` slots,
    /// publishing the counters in the state directory `state`. `helpers`: rootless (a forked
    /// helper per process); otherwise hydra joins their network namespaces itself.
    pub fn start(
        forwards: &[Forward],
        listeners: Vec<(usize, Listener)>,
        processes: usize,
        state: &std::path::Path,
        helpers: bool,
    ) -> Ports {
        let sources = Sources::new(processes);
        let counters: Vec<Arc<Counters>> = forwards.iter().map(|_| Default::default()).collect();
        let forwarder =
            Forwarder::start(forwards, listeners, &sources, &counters, stats_file(state));
        Ports {
            sources,
            helpers,
            _forwarder: forwarder,
        }
    }

    /// Process `index` was cloned (`pidfd`): rootless, its helper joins its namespaces before
    /// it may go (once going it is non-dumpable); as root, its pidfd is kept for later.
    pub fn attach(&self, index: usize, pidfd: BorrowedFd<'_>) -> Result<(), ForwardError> {
        let source = if self.helpers {
            Source::Helper(SocketSource::start(pidfd)?)
        } else {
            Source::Netns(pidfd.try_clone_to_owned().map_err(ForwardError::Helper)?)
        };
        self.sources.set(index, Some(source));
        Ok(())
    }

    /// Process `index` ended: new connections no longer go to it.
    pub fn detach(&self, index: usize) {
        self.sources.set(index, None);
    }
}

/// Where the forwarder's counters are published for `hydra ports`.
pub fn stats_file(state: &std::path::Path) -> PathBuf {
    state.join("ports-stats.json")
}

/// Writes the counters (as `[connections, active, in_packets, in_bytes, out_packets,
/// out_bytes]` per mapping) for `hydra ports`, atomically.
fn publish(path: &std::path::Path, counters: &[Arc<Counters>]) {
    let rows: Vec<[u64; 6]> = counters
        .iter()
        .map(|c| {
            let (conns, active, i, o) = c.read();
            [conns, active, i.packets, i.bytes, o.packets, o.bytes]
        })
        .collect();
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, serde_json::to_string(&rows).unwrap_or_default()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

//! The socket redirect: a local client's TCP connection to a mapped port goes straight to the
//! virtual process, chosen at `connect()` time, instead of through DNAT on every packet.
//!
//! Small cgroup programs, linked to the root of the cgroup v2 hierarchy (so they see every
//! socket on the host) for as long as the container's supervisor lives:
//! - `connect4` rewrites the address of a `connect()` in the host's network namespace to
//!   `127.0.0.0/8:HOST` or to the host end of one of the container's links (`HOST_END:HOST`),
//!   for a TCP mapping, into `PROCESS:PORT` (the instances in turn for `count > 1`), and notes
//!   the address asked for under the socket's cookie;
//! - `getpeername4` gives that address back, so the client sees the peer it connected to;
//! - `getsockname4` shows such a client of `127.0.0.0/8` its own address as `127.0.0.1` (the
//!   source DNAT would have left it), not the host end of the link it really uses.
//!
//! The packets are then those of a direct connection: no per-packet NAT, no masquerade, no
//! re-routing (the socket is routed to the process from the start), and no connection tracking:
//! `connect4` gives the socket the mark [`MARK`], and hydra's raw-priority chains untrack the
//! packets of marked sockets both ways; the container's chains count them (`firewall.rs`).
//! Everything else still goes through DNAT: UDP, other namespaces, clients from other hosts,
//! other local addresses (whose set changes under us; 127.0.0.0/8 and hydra's own link
//! addresses are local for sure), sockets bound to 127.0.0.0/8 before they connect, and
//! mappings spread over more instances than a map value holds.
//!
//! Unavailable (rootless, no cgroup BPF, another tool's exclusive program on the root cgroup),
//! the mapping works through DNAT alone.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::bpf::{
    self, Alu, AsmError, AttachType, BpfError, Cond, Helper, MapType, ProgType, Size, R0, R1, R10,
    R2, R3, R4, R5, R6, R7, R8, R9,
};
use super::firewall::{Forward, Network};
use crate::config::Protocol;

/// The mark the redirect gives the sockets it redirects (`SO_MARK`): hydra's firewall lets
/// their packets skip connection tracking and counts them. Routing sees it too: a host policy
/// rule on exactly this mark would apply to them.
pub const MARK: u32 = 0x68;

/// Instances one map value holds; a mapping spread over more is left to DNAT.
pub const MAX_BACKENDS: usize = 16;
/// Key: the address asked for, as the program reads it (`user_ip4`, `user_port`: network order).
const KEY: usize = 8;
/// Value: the number of instances, the turn counter, then each instance's address and port.
const VALUE: usize = 8 + 8 * MAX_BACKENDS;
/// Sockets whose asked-for address is remembered for `getpeername` (least recently used go).
const REMEMBERED: usize = 8192;
/// `IPPROTO_TCP`.
const TCP: i32 = 6;
/// `struct bpf_sock_addr` offsets.
const USER_IP4: i16 = 4;
const USER_PORT: i16 = 24;
const PROTOCOL: i16 = 36;
const SK: i16 = 64;
/// `struct bpf_sock`: the address the socket is bound to.
const SRC_IP4: i16 = 24;
/// `setsockopt(SOL_SOCKET, SO_MARK)`.
const SOL_SOCKET: i32 = 1;
const SO_MARK: i32 = 36;

/// A container's socket redirect, installed by a thread of its own once the container's
/// processes run, so that starting them never waits for it (the first mount of cgroup v2 on a
/// cgroup v1 host takes ~12 ms, loading and linking the programs ~1 ms more; until they are
/// linked, DNAT serves the same connections). Dropping it waits for the
/// thread and detaches the programs; so does the process exiting, however it exits.
#[derive(Debug)]
pub struct SocketRedirect {
    installing: Option<std::thread::JoinHandle<Option<Installed>>>,
    /// Lets the thread begin (`open`); dropped unsent, it ends without installing anything.
    gate: Option<std::sync::mpsc::Sender<()>>,
}

/// The file in a container's state directory that says how the redirect's installation ended:
/// `linked`, or `not linked: REASON`.
pub const STATE_FILE: &str = "redirect";

impl SocketRedirect {
    /// Prepares the redirect for `net`'s mappings, to be installed once [`open`](Self::open)ed,
    /// noting the outcome in `dir`; `None` when none of them qualifies or [`SWITCH`] turns it
    /// off. Whatever fails on the way leaves the mappings to DNAT.
    pub fn start(net: &Network, dir: &Path) -> Option<SocketRedirect> {
        let entries = entries(net);
        if entries.is_empty() || std::env::var_os(SWITCH).is_some_and(|v| v == "0") {
            return None;
        }
        let note = dir.join(STATE_FILE);
        let (gate, opened) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hydra-redirect".into())
            .spawn(move || {
                opened.recv().ok()?;
                let installed = install(&entries);
                let said = match &installed {
                    Ok(_) => "linked".to_string(),
                    Err(e) => format!("not linked: {e}"),
                };
                let _ = std::fs::write(note, said + "\n");
                installed.ok()
            })
            .ok()?;
        Some(SocketRedirect {
            installing: Some(thread),
            gate: Some(gate),
        })
    }

    /// Lets the installation begin (once the processes run: on one CPU, its work in the kernel
    /// would otherwise delay their start).
    pub fn open(&mut self) {
        if let Some(gate) = self.gate.take() {
            let _ = gate.send(());
        }
    }

    /// Whether the redirect of the container whose state directory is `dir` is linked (`None`
    /// while it is being installed or when there is none), and why not.
    pub fn state(dir: &Path) -> Option<Result<(), String>> {
        let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
        let text = text.trim();
        Some(match text.strip_prefix("not linked: ") {
            Some(reason) => Err(reason.to_string()),
            None => Ok(()),
        })
    }
}

impl Drop for SocketRedirect {
    fn drop(&mut self) {
        // Never opened: the thread ends at once. The programs go with what it returns.
        self.gate = None;
        if let Some(thread) = self.installing.take() {
            let _ = thread.join();
        }
    }
}

/// The linked programs (the links keep them and their maps), and the cgroup v2 root they are
/// linked to (kept open, so a mount made for it stays and the next container's is quick).
#[derive(Debug)]
struct Installed {
    _links: Vec<OwnedFd>,
    _cgroup: OwnedFd,
}

/// One key and its value in the mapping map.
pub type Entry = ([u8; KEY], [u8; VALUE]);

fn key(ip: Ipv4Addr, port: u16) -> [u8; KEY] {
    let mut k = [0; KEY];
    k[..4].copy_from_slice(&ip.octets());
    k[4..6].copy_from_slice(&port.to_be_bytes());
    k
}

/// Whether the redirect serves local clients of `f`: TCP, on every IPv4 address or a loopback
/// one, to at most [`MAX_BACKENDS`] instances.
pub fn qualifies(f: &Forward) -> bool {
    let address = match f.host_ip {
        None => true,
        Some(IpAddr::V4(ip)) => ip.is_unspecified() || ip.is_loopback(),
        Some(IpAddr::V6(_)) => false,
    };
    f.protocol == Protocol::Tcp
        && address
        && !f.targets.is_empty()
        && f.targets.len() <= MAX_BACKENDS
}

/// The map's entries for `net`: for every IPv4 TCP mapping the kernel serves, the addresses a
/// local client may ask for (`0.0.0.0` stands for all of 127.0.0.0/8) and where they lead.
pub fn entries(net: &Network) -> Vec<Entry> {
    let host_ends: Vec<Ipv4Addr> = net.endpoints.iter().map(|e| e.subnet.host()).collect();
    let mut out = Vec::new();
    for f in net.forwards.iter().filter(|f| qualifies(f)) {
        let asked: Vec<Ipv4Addr> = match f.host_ip {
            Some(IpAddr::V4(ip)) if ip.is_loopback() => vec![ip],
            _ => std::iter::once(Ipv4Addr::UNSPECIFIED)
                .chain(host_ends.iter().copied())
                .collect(),
        };
        let guests: Vec<Ipv4Addr> = f
            .targets
            .iter()
            .filter_map(|&t| net.endpoints.get(t))
            .map(|e| e.subnet.guest())
            .collect();
        if guests.is_empty() {
            continue;
        }
        let mut value = [0; VALUE];
        value[..4].copy_from_slice(&(guests.len() as u32).to_ne_bytes());
        for (i, guest) in guests.iter().enumerate() {
            let at = 8 + 8 * i;
            value[at..at + 4].copy_from_slice(&guest.octets());
            value[at + 4..at + 6].copy_from_slice(&f.port.to_be_bytes());
        }
        out.extend(asked.into_iter().map(|ip| (key(ip, f.host_port), value)));
    }
    out
}

/// `connect4`: rewrites a TCP connect in the host's namespace whose address is in `mappings`.
fn connect_program(
    host_netns: u64,
    mappings: RawFd,
    asked: RawFd,
) -> Result<Vec<bpf::Insn>, AsmError> {
    let mut a = bpf::Asm::default();
    a.mov(R6, R1)
        .load(Size::W, R2, R6, PROTOCOL)
        .jump_imm(Cond::Ne, R2, TCP, "out")
        .mov(R1, R6)
        .call(Helper::GetNetnsCookie)
        .load_u64(R2, host_netns)
        .jump(Cond::Ne, R0, R2, "out")
        // A socket bound to 127.0.0.0/8 before it connects keeps DNAT, whose masquerade gives
        // the process an address to answer that is not its own loopback.
        .load(Size::Dw, R2, R6, SK)
        .load(Size::W, R2, R2, SRC_IP4)
        .alu_imm(Alu::And, R2, 0xff)
        .jump_imm(Cond::Eq, R2, 127, "out")
        // The key (address, port) at fp-8; the exact address first.
        .load(Size::W, R7, R6, USER_IP4)
        .load(Size::W, R8, R6, USER_PORT)
        .store(Size::W, R10, -8, R7)
        .store(Size::W, R10, -4, R8)
        .lookup(mappings, -8)
        .jump_imm(Cond::Ne, R0, 0, "found")
        // Then 0.0.0.0 for any address in 127.0.0.0/8 (its first byte is the lowest).
        .mov(R2, R7)
        .alu_imm(Alu::And, R2, 0xff)
        .jump_imm(Cond::Ne, R2, 127, "out")
        .store_imm(Size::W, R10, -8, 0)
        .lookup(mappings, -8)
        .jump_imm(Cond::Eq, R0, 0, "out")
        .label("found")
        .mov(R9, R0)
        // Remember the address asked for (fp-16) under the socket's cookie (fp-24).
        .store(Size::W, R10, -16, R7)
        .store(Size::W, R10, -12, R8)
        .mov(R1, R6)
        .call(Helper::GetSocketCookie)
        .store(Size::Dw, R10, -24, R0)
        .update(asked, -24, -16)
        // The mark that lets its packets skip connection tracking (`firewall.rs`); should the
        // kernel refuse it, the connection is tracked and the firewall lets it in all the same.
        .store_imm(Size::W, R10, -28, MARK as i32)
        .mov(R1, R6)
        .mov_imm(R2, SOL_SOCKET)
        .mov_imm(R3, SO_MARK)
        .frame_ptr(R4, -28)
        .mov_imm(R5, 4)
        .call(Helper::Setsockopt)
        // The instances in turn, as DNAT's `numgen inc` takes them: value + 8 * (turn % count),
        // masked into the value. The turn counter is the value's second word; two CPUs may
        // take the same turn now and then, which only makes one instance get one more.
        .load(Size::W, R0, R9, 4)
        .alu_imm(Alu::Add, R0, 1)
        .store(Size::W, R9, 4, R0)
        .load(Size::W, R1, R9, 0)
        .alu32(Alu::Mod, R0, R1)
        .alu_imm(Alu::And, R0, MAX_BACKENDS as i32 - 1)
        .alu_imm(Alu::Lsh, R0, 3)
        .alu(Alu::Add, R9, R0);
    set_peer(&mut a, R9, 8);
    finish(a)
}

/// Sets the context's address and port to the pair at `ptr + at` (uses r2 and r3).
fn set_peer(a: &mut bpf::Asm, ptr: bpf::Reg, at: i16) {
    a.load(Size::W, R2, ptr, at)
        .load(Size::W, R3, ptr, at + 4)
        .store(Size::W, R6, USER_IP4, R2)
        .store(Size::W, R6, USER_PORT, R3);
}

/// Ends a program at the `out` label: the hooks must return 1 (the call goes on).
fn finish(mut a: bpf::Asm) -> Result<Vec<bpf::Insn>, AsmError> {
    a.label("out").mov_imm(R0, 1).exit();
    a.finish()
}

/// The start of a name program: r6 the context, r0 the address the socket asked for (from
/// `asked`, by its cookie); a socket `connect4` did not redirect goes to `out`.
fn redirected_socket(asked: RawFd) -> bpf::Asm {
    let mut a = bpf::Asm::default();
    a.mov(R6, R1)
        .call(Helper::GetSocketCookie)
        .store(Size::Dw, R10, -8, R0)
        .lookup(asked, -8)
        .jump_imm(Cond::Eq, R0, 0, "out");
    a
}

/// `getpeername4`: the address asked for, for a socket `connect4` redirected.
fn getpeername_program(asked: RawFd) -> Result<Vec<bpf::Insn>, AsmError> {
    let mut a = redirected_socket(asked);
    set_peer(&mut a, R0, 0);
    finish(a)
}

/// `getsockname4`: `127.0.0.1` for the local address of a socket `connect4` redirected from
/// `127.0.0.0/8` (its port stays: it is the real one).
fn getsockname_program(asked: RawFd) -> Result<Vec<bpf::Insn>, AsmError> {
    let mut a = redirected_socket(asked);
    a.load(Size::W, R2, R0, 0)
        .alu_imm(Alu::And, R2, 0xff)
        .jump_imm(Cond::Ne, R2, 127, "out")
        // Through a register: kernels before 6.3 refuse an immediate stored into the context.
        .mov_imm(R2, u32::from_ne_bytes(Ipv4Addr::LOCALHOST.octets()) as i32)
        .store(Size::W, R6, USER_IP4, R2);
    finish(a)
}

/// The cookie of this process's network namespace (the host's, where the supervisor runs).
fn netns_cookie() -> std::io::Result<u64> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid socket and an 8-byte buffer with its length.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// How the cgroup v2 root directory is opened.
const DIRECTORY: nix::fcntl::OFlag = nix::fcntl::OFlag::O_RDONLY
    .union(nix::fcntl::OFlag::O_DIRECTORY)
    .union(nix::fcntl::OFlag::O_CLOEXEC);

/// The root of the cgroup v2 hierarchy: where the host mounts it, else from a mount of its own
/// that is never attached anywhere (so nothing shows in /proc/mounts, on a cgroup v1 host too).
fn cgroup2_root() -> std::io::Result<OwnedFd> {
    match crate::cgroups::mode::detect().v2_root() {
        Some(path) => Ok(nix::fcntl::open(
            path,
            DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )?),
        None => mount_cgroup2(),
    }
}

fn mount_cgroup2() -> std::io::Result<OwnedFd> {
    let check = |r: libc::c_long| -> std::io::Result<RawFd> {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r as RawFd)
        }
    };
    // SAFETY: fsopen with a NUL-terminated name; the fd returned is owned below.
    let fs = check(unsafe { libc::syscall(libc::SYS_fsopen, c"cgroup2".as_ptr(), 1) })?;
    // SAFETY: a new fd nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs) };
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            6,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    })?;
    // SAFETY: FSMOUNT_CLOEXEC, no mount attributes.
    let mnt = check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), 1, 0) })?;
    // SAFETY: a new fd nothing else owns.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt) };
    let root = nix::fcntl::openat(&mnt, ".", DIRECTORY, nix::sys::stat::Mode::empty())?;
    Ok(root)
}

#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Asm(#[from] AsmError),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Set to `0`, no container started with it redirects: its mappings go through DNAT alone.
pub const SWITCH: &str = "HYDRA_SOCKET_REDIRECT";

/// Loads `program` for the address hook `attach` and links it to `cgroup`.
fn link(
    cgroup: &OwnedFd,
    attach: AttachType,
    program: Vec<bpf::Insn>,
    name: &'static str,
) -> Result<OwnedFd, RedirectError> {
    let prog = bpf::prog_load(ProgType::CgroupSockAddr, attach, &program, name)?;
    Ok(bpf::link_cgroup(&prog, cgroup, attach)?)
}

/// Links the programs for the map `entries` to the root of the cgroup v2 hierarchy.
fn install(entries: &[Entry]) -> Result<Installed, RedirectError> {
    use AttachType::{
        CgroupInet4Connect as Connect, CgroupInet4Getpeername as Getpeername,
        CgroupInet4Getsockname as Getsockname,
    };
    let sys = |what| move |source| RedirectError::Sys { what, source };
    let host_netns = netns_cookie().map_err(sys("reading the network namespace's cookie"))?;
    let cgroup = cgroup2_root().map_err(sys("opening the root of the cgroup v2 hierarchy"))?;
    let mappings = bpf::map_create(MapType::Hash, KEY, VALUE, entries.len(), "hydra_ports")?;
    for (k, v) in entries {
        bpf::map_update(&mappings, k, v)?;
    }
    // The maps stay open until the programs that use them are loaded (they hold them then).
    let asked_map = bpf::map_create(MapType::LruHash, 8, 8, REMEMBERED, "hydra_asked")?;
    let asked = asked_map.as_raw_fd();
    let programs = [
        (Getpeername, getpeername_program(asked)?, "hydra_peername4"),
        (Getsockname, getsockname_program(asked)?, "hydra_sockname4"),
        (
            Connect,
            connect_program(host_netns, mappings.as_raw_fd(), asked)?,
            "hydra_connect4",
        ),
    ];
    // In this order: the name programs first, so no redirected socket ever shows its real
    // addresses.
    let mut links = Vec::new();
    for (attach, program, name) in programs {
        links.push(link(&cgroup, attach, program, name)?);
    }
    Ok(Installed {
        _links: links,
        _cgroup: cgroup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::firewall::Endpoint;
    use crate::net::pool::Pool;

    fn net(forwards: Vec<Forward>) -> Network {
        let pool = Pool::parse("10.231.0.0/16").expect("pool");
        let subnets = pool.choose(2, &[], &[]).expect("subnets");
        Network {
            container: "c".into(),
            pool: "10.231.0.0/16".into(),
            endpoints: subnets
                .into_iter()
                .enumerate()
                .map(|(i, subnet)| Endpoint {
                    process: format!("web.{i}"),
                    subnet,
                    egress: false,
                })
                .collect(),
            forwards,
            internal: Vec::new(),
            userspace: false,
        }
    }

    fn forward(protocol: Protocol, host_ip: Option<IpAddr>, targets: Vec<usize>) -> Forward {
        Forward {
            protocol,
            host_ip,
            host_port: 18080,
            port: 8080,
            process: "web".into(),
            targets,
        }
    }

    #[test]
    fn a_tcp_mapping_on_every_address_redirects_loopback_and_the_links_host_ends() {
        let n = net(vec![forward(Protocol::Tcp, None, vec![0, 1])]);
        let e = entries(&n);
        let asked: Vec<[u8; KEY]> = e.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            asked,
            vec![
                key(Ipv4Addr::UNSPECIFIED, 18080),
                key(n.endpoints[0].subnet.host(), 18080),
                key(n.endpoints[1].subnet.host(), 18080),
            ]
        );
        // Port 18080 = 0x46a0, in network order.
        assert_eq!(&asked[0][4..], &[0x46, 0xa0, 0, 0]);
        let value = e[0].1;
        assert_eq!(u32::from_ne_bytes(value[..4].try_into().unwrap()), 2);
        assert_eq!(&value[8..12], &n.endpoints[0].subnet.guest().octets());
        assert_eq!(&value[12..16], &[0x1f, 0x90, 0, 0]);
        assert_eq!(&value[16..20], &n.endpoints[1].subnet.guest().octets());
        assert!(value[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn udp_other_addresses_and_wide_spreads_are_left_to_dnat() {
        let wide = (0..=MAX_BACKENDS).map(|_| 0).collect();
        let n = net(vec![
            forward(Protocol::Udp, None, vec![0]),
            forward(Protocol::Tcp, Some("192.0.2.1".parse().unwrap()), vec![0]),
            forward(Protocol::Tcp, Some("::".parse().unwrap()), vec![0]),
            forward(Protocol::Tcp, None, wide),
        ]);
        assert!(entries(&n).is_empty());
        // A target that names no endpoint is no instance to spread over.
        let stray = net(vec![forward(Protocol::Tcp, None, vec![1, 7])]);
        let e = entries(&stray);
        assert_eq!(u32::from_ne_bytes(e[0].1[..4].try_into().unwrap()), 1);
        assert_eq!(&e[0].1[8..12], &stray.endpoints[1].subnet.guest().octets());
        let only = net(vec![forward(
            Protocol::Tcp,
            Some("127.0.0.2".parse().unwrap()),
            vec![1],
        )]);
        let e = entries(&only);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, key(Ipv4Addr::new(127, 0, 0, 2), 18080));
    }

    #[test]
    fn the_state_file_says_linked_or_why_not() {
        let dir = std::env::temp_dir().join(format!("hydra-redirect-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(SocketRedirect::state(&dir), None, "still installing");
        std::fs::write(dir.join(STATE_FILE), "linked\n").unwrap();
        assert_eq!(SocketRedirect::state(&dir), Some(Ok(())));
        std::fs::write(dir.join(STATE_FILE), "not linked: linking: EPERM\n").unwrap();
        assert_eq!(
            SocketRedirect::state(&dir),
            Some(Err("linking: EPERM".to_string()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_programs_assemble() {
        assert!(connect_program(1, 3, 4).is_ok());
        assert!(getpeername_program(4).is_ok());
        assert!(getsockname_program(4).is_ok());
    }

    #[test]
    fn no_program_stores_an_immediate_into_its_context() {
        // Kernels before 6.3 refuse `BPF_ST` into the context (r6 holds it here): the values
        // go through a register.
        let programs = [
            connect_program(1, 3, 4).unwrap(),
            getpeername_program(4).unwrap(),
            getsockname_program(4).unwrap(),
        ];
        for insn in programs.iter().flatten().map(|i| i.bytes()) {
            let store_immediate = insn[0] & 0x07 == 0x02;
            assert!(!(store_immediate && insn[1] & 0x0f == 6), "{insn:?}");
        }
    }
}

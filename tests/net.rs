//! Network isolation from inside and outside: `partial` processes are reachable only through
//! their port mappings (at 127.0.0.1 and at the host end of their link), cannot open connections
//! unless `egress` allows it, `hydra ports` counts what went through, and nothing (chains, veths,
//! state) outlives a container, even a killed one. Traffic only ever goes to loopback and to the
//! namespaces these tests create.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// A TCP echo server on 8080 and a second one on 9090 (never mapped), a UDP echo on 5353.
const SERVERS: &str = "nc -ll -p 8080 -e cat & nc -ll -p 9090 -e cat & \
                       hydra-probe udp-echo 5353 & echo servers up; wait";

/// Sends `message` and reads the echo back in full.
fn echo(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).unwrap();
    let mut got = vec![0u8; message.len()];
    stream.read_exact(&mut got).unwrap();
    got
}

/// (host end, process end) of the link of the first target of the first mapping.
fn link_of(name: &str) -> (Ipv4Addr, Ipv4Addr) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Hydra::bare().args(["ports", name, "--json"]).output();
        if out.code() == 0 {
            let v: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
            let guest: Ipv4Addr = v[0]["targets"][0]["address"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let host = Ipv4Addr::from(u32::from(guest) - 1);
            return (host, guest);
        }
        assert!(Instant::now() < end, "no ports for {name}: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn veth_of(host: Ipv4Addr) -> String {
    format!("hy{:08x}", (u32::from(host) - 1) >> 2)
}

/// The interface index of `veth`, if it exists. Other tests may reuse a freed subnet (and so
/// its interface name) at once, so "gone" means "this index is gone".
fn ifindex(veth: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(veth).join("ifindex")).ok()
}

fn link_gone(veth: &str, index: &Option<String>) -> bool {
    index.is_some() && ifindex(veth) != *index
}

/// The connection fails (refused or timed out) rather than reaching anything.
fn unreachable(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

#[test]
fn a_mapped_port_answers_at_loopback_and_the_link_and_nothing_else_does() {
    require_root();
    let (run, name) =
        serving(Hydra::run("net-map").args(["-p", "18101:8080", "-p", "18102:5353/udp"]));
    let (host, guest) = link_of(&name);
    let mut local = connect_retrying(SocketAddr::from(([127, 0, 0, 1], 18101)));
    assert_eq!(echo(&mut local, b"via loopback\n"), b"via loopback\n");
    let mut link = connect_retrying(SocketAddr::from((host, 18101)));
    assert_eq!(echo(&mut link, b"via the link\n"), b"via the link\n");
    // The unmapped server on 9090 is not reachable, neither through the host nor directly.
    assert!(unreachable(SocketAddr::from(([127, 0, 0, 1], 9090))));
    assert!(unreachable(SocketAddr::from((host, 9090))));
    assert!(
        unreachable(SocketAddr::from((guest, 9090))),
        "the host reached an unmapped port of the process directly"
    );
    // UDP echo through the UDP mapping.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut answer = [0u8; 64];
    let mut got = None;
    for _ in 0..5 {
        udp.send_to(b"datagram", "127.0.0.1:18102").unwrap();
        if let Ok((n, _)) = udp.recv_from(&mut answer) {
            got = Some(answer[..n].to_vec());
            break;
        }
    }
    assert_eq!(got.as_deref(), Some(&b"datagram"[..]));
    drop((local, link));
    let veth = veth_of(host);
    let index = ifindex(&veth);
    assert!(
        index.is_some(),
        "{veth} should exist while the process runs"
    );
    run.signal(libc::SIGTERM);
    run.wait();
    assert!(link_gone(&veth, &index), "{veth} outlived its process");
    assert!(nft_chains_of(&name).is_empty());
}

/// `hydra ports --json` once the forwarder has published `connections` for mapping `row`.
fn ports_once_counted(name: &str, row: usize, connections: u64) -> Vec<serde_json::Value> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let v = ports(name);
        if v[row]["connections"].as_u64() == Some(connections) || Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ipv6_clients_reach_the_mapping_through_hydras_own_listener() {
    require_root();
    let (run, name) = serving(Hydra::run("net-v6").args([
        "-p",
        "18111:8080",
        "-p",
        "[::1]:18112:8080",
        "-p",
        "18113:5353/udp",
    ]));
    let v6 = |port: u16| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    // No host address: IPv4 through the firewall, IPv6 through hydra's listener on [::].
    let mut both = connect_retrying(v6(18111));
    assert_eq!(echo(&mut both, b"ipv6 all\n"), b"ipv6 all\n");
    let mut four = connect_retrying(SocketAddr::from(([127, 0, 0, 1], 18111)));
    assert_eq!(echo(&mut four, b"ipv4\n"), b"ipv4\n");
    // [::1] only: IPv6 loopback answers, IPv4 does not.
    let mut one = connect_retrying(v6(18112));
    assert_eq!(echo(&mut one, b"only ::1\n"), b"only ::1\n");
    assert!(unreachable(SocketAddr::from(([127, 0, 0, 1], 18112))));
    // Unmapped ports stay closed over IPv6 too.
    assert!(unreachable(v6(9090)));
    assert!(unreachable(v6(8080)));
    let udp = UdpSocket::bind("[::1]:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut answer = [0u8; 64];
    let mut got = None;
    for _ in 0..5 {
        udp.send_to(b"v6 datagram", v6(18113)).unwrap();
        if let Ok((n, _)) = udp.recv_from(&mut answer) {
            got = Some(answer[..n].to_vec());
            break;
        }
    }
    assert_eq!(got.as_deref(), Some(&b"v6 datagram"[..]));
    drop((both, four, one));
    // Both families add up in one row per mapping.
    let v = ports_once_counted(&name, 0, 2);
    assert_eq!(v[0]["connections"], 2, "{v:?}");
    assert_eq!(v[1]["connections"], 1, "{v:?}");
    assert_eq!(v[1]["host_ip"], "::1", "{v:?}");
    assert_eq!(v[1]["received"]["bytes"], 9, "{v:?}");
    assert_eq!(v[1]["sent"]["bytes"], 9, "{v:?}");
    run.signal(libc::SIGTERM);
    run.wait();
    // hydra's listeners went with it.
    std::net::TcpListener::bind(v6(18111)).expect("[::]:18111 still held after the run");
    std::net::TcpListener::bind(v6(18112)).expect("[::1]:18112 still held after the run");
}

#[test]
fn ports_counts_connections_and_bytes_of_the_mapping() {
    require_root();
    let (run, name) = serving(Hydra::run("net-count").args(["-p", "18114:8080"]));
    link_of(&name);
    // connect() retries until the server listens; earlier refused attempts are flows too, so
    // the counters are read relative to a first connection.
    let mut first = connect_retrying(SocketAddr::from(([127, 0, 0, 1], 18114)));
    assert_eq!(echo(&mut first, b"x"), b"x");
    let before = ports(&name)[0].clone();
    assert_eq!(before["active"], 1, "{before}");
    let payload = vec![b'a'; 100_000];
    for _ in 0..3 {
        let mut s = connect_retrying(SocketAddr::from(([127, 0, 0, 1], 18114)));
        assert_eq!(echo(&mut s, &payload), payload);
    }
    let after = ports(&name)[0].clone();
    let delta = |path: [&str; 2]| {
        after[path[0]][path[1]].as_u64().unwrap() - before[path[0]][path[1]].as_u64().unwrap()
    };
    assert_eq!(
        after["connections"].as_u64().unwrap() - before["connections"].as_u64().unwrap(),
        3,
        "{after}"
    );
    // 3 × 100 000 payload bytes each way; headers add 40–60 bytes per packet.
    let (received, sent) = (delta(["received", "bytes"]), delta(["sent", "bytes"]));
    let packets = delta(["received", "packets"]) + delta(["sent", "packets"]);
    for bytes in [received, sent] {
        assert!(bytes >= 300_000, "{after}");
        assert!(bytes <= 300_000 + 60 * packets, "{after}");
    }
    assert_eq!(after["process"], name.as_str());
    let table = Hydra::bare().args(["ports", &name]).output();
    table.assert_ok();
    table.assert_stdout_contains("18114/tcp");
    drop(first);
    run.signal(libc::SIGTERM);
    run.wait();
}

/// Starts `hydra` (a run with its mappings) serving [`SERVERS`] and waits until they are up;
/// with its container's name.
fn serving(hydra: Hydra) -> (Running, String) {
    let mut run = hydra.sh(SERVERS).spawn();
    run.wait_for_stdout("servers up");
    let name = run.name().to_string();
    (run, name)
}

/// The packets counted by the rule of `chain` with `comment`.
fn counted(chain: &str, comment: &str) -> u64 {
    nft_rules(chain)
        .iter()
        .filter(|r| r["comment"] == comment)
        .flat_map(|r| r["expr"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .sum()
}

/// Once nothing redirects or translates 127.0.0.1:`port` any more, the host's own listener
/// there gets the connection.
fn port_is_the_hosts_own(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    assert!(s.is_ok(), "{s:?}");
    assert!(listener.accept().is_ok());
}

/// Waits until `hydra ports` says the first mapping of `name` goes through the redirect.
fn wait_redirected(name: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    while ports(name)[0]["redirected"] != true {
        if Instant::now() > end {
            // The table's last line says why the programs are not linked.
            let table = Hydra::bare().args(["ports", name]).output();
            panic!("not redirected: {}", table.stdout);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP connection from a socket bound to 127.0.0.1 before it connects.
fn connect_from_loopback(to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        panic!("{to}")
    };
    let sin = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, owned by the stream below; the addresses are valid sockaddr_in.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let stream = TcpStream::from_raw_fd(fd);
        // connect() gives up after this too.
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let local = sin(Ipv4Addr::LOCALHOST, 0);
        assert_eq!(
            libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len),
            0
        );
        let peer = sin(*to.ip(), to.port());
        assert_eq!(
            libc::connect(fd, (&peer as *const libc::sockaddr_in).cast(), len),
            0
        );
        stream
    }
}

/// The script a process runs to connect to the host end of its link (its default gateway) at
/// `port`, from its own port `from` if given.
fn connect_to_gateway(port: u16, from: Option<u16>) -> String {
    let from = from.map(|p| format!(" {p}")).unwrap_or_default();
    format!(
        "gw=$(ip route | sed -n 's/^default via \\([^ ]*\\).*/\\1/p'); hydra-probe connect $gw {port}{from}"
    )
}

#[test]
fn a_local_client_goes_straight_to_the_process_and_sees_the_address_it_asked_for() {
    require_root();
    let (run, name) = serving(Hydra::run("net-redirect").args(["-p", "18186:8080"]));
    let (host, guest) = link_of(&name);
    // The programs are linked by a thread of the supervisor's own once the process runs;
    // until then (milliseconds), DNAT serves.
    wait_redirected(&name);
    let table = Hydra::bare().args(["ports", &name]).output();
    table.assert_stdout_contains("local TCP clients go straight to the processes");
    let asked = [
        SocketAddr::from(([127, 0, 0, 1], 18186)),
        SocketAddr::from(([127, 0, 0, 9], 18186)),
        SocketAddr::from((host, 18186)),
    ];
    let mut streams = Vec::new();
    for addr in asked {
        let mut s = connect_retrying(addr);
        assert_eq!(echo(&mut s, b"straight\n"), b"straight\n");
        assert_eq!(
            s.peer_addr().unwrap(),
            addr,
            "getpeername shows what was asked for"
        );
        // And getsockname the source DNAT would have left: 127.0.0.1 for 127.0.0.0/8 (the
        // link's host end is what the connection really uses), the host end for the host end.
        let local = if addr.ip().is_loopback() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from(host)
        };
        assert_eq!(s.local_addr().unwrap().ip(), local, "getsockname");
        streams.push(s);
    }
    // No packet was translated: each connection went to the process's address from its start.
    assert_eq!(counted(&format!("{name}-dnat"), "m0 new"), 0);
    assert!(counted(&format!("{name}-post"), "m0 local") >= 3);
    // Nor tracked: the kernel keeps no state for them, as for a direct connection.
    let flows = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap_or_default();
    for s in &streams {
        let port = s.local_addr().unwrap().port();
        let flow = format!("sport={port} dport=8080 ");
        assert!(
            !flows
                .lines()
                .any(|l| l.contains(&flow) && l.contains(&guest.to_string())),
            "{flow} is tracked:\n{flows}"
        );
    }
    let v = ports_once_counted(&name, 0, 3);
    assert_eq!(v[0]["active"], 3, "{v:?}");
    // A client bound to 127.0.0.1 before it connects keeps DNAT (its masquerade gives the
    // process an address to answer that is not its own loopback): translated once, and it works.
    let mut bound = connect_from_loopback(asked[0]);
    assert_eq!(echo(&mut bound, b"translated\n"), b"translated\n");
    assert_eq!(counted(&format!("{name}-dnat"), "m0 new"), 1);
    drop(bound);
    // Another namespace's 127.0.0.1:18186 is its own: a `complete` process reaches its own
    // listener there (redirected, it would find no route to the process's address).
    let other = Hydra::run("net-redirect-other")
        .args(["--net", "complete"])
        .sh("nc -ll -p 18186 -e true & \
             for i in 1 2 3 4 5 6 7 8 9 10; do hydra-probe connect 127.0.0.1 18186 && exit; \
             sleep 0.2; done")
        .output();
    other.assert_stdout_contains("connect: ok");
    drop(streams);
    run.signal(libc::SIGTERM);
    run.wait();
    // Gone with the container.
    port_is_the_hosts_own(18186);
}

#[test]
fn with_the_redirect_switched_off_local_clients_go_through_dnat() {
    require_root();
    let (run, name) = serving(
        Hydra::run("net-no-redirect")
            .env("HYDRA_SOCKET_REDIRECT", "0")
            .args(["-p", "18187:8080"]),
    );
    link_of(&name);
    let mut s = connect_retrying(SocketAddr::from(([127, 0, 0, 1], 18187)));
    assert_eq!(echo(&mut s, b"translated\n"), b"translated\n");
    let v = ports(&name);
    assert_eq!(v[0]["redirected"], false, "{v:?}");
    assert!(counted(&format!("{name}-dnat"), "m0 new") >= 1);
    assert_eq!(counted(&format!("{name}-post"), "m0 local"), 0);
    let table = Hydra::bare().args(["ports", &name]).output();
    assert!(!table.stdout.contains("socket redirect"), "{table}");
    drop(s);
    run.signal(libc::SIGTERM);
    run.wait();
}

#[test]
fn a_mapped_port_is_no_way_out_of_the_process() {
    require_root();
    // Replies from the mapped port pass untracked to the sockets the redirect connected; a
    // connection the process opens from that port to the host is no reply.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = Hydra::run("net-from-mapped")
        .args(["-p", "18189:8080"])
        .sh(&connect_to_gateway(port, Some(8080)))
        .output();
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stdout.contains("connect: ETIMEDOUT"), "{out}");
    // Not even the first packet arrived: the listener holds no half-open connection from it.
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let (local, remote) = (format!(":{port:04X}"), format!(":{:04X}", 8080));
    let reached: Vec<&str> = table
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1].ends_with(&local) && f[2].ends_with(&remote)
        })
        .collect();
    assert!(reached.is_empty(), "{reached:?}");
    drop(listener);
}

#[test]
fn a_partial_process_cannot_open_connections_unless_egress_allows_it() {
    require_root();
    // A listener on every host address (the host end of the link included).
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = connect_to_gateway(port, None);
    let denied = Hydra::run("net-egress-deny")
        .args(["--net", "partial"])
        .sh(&script)
        .output();
    assert_eq!(denied.code(), 1, "{denied}");
    assert!(
        denied.stdout.contains("ETIMEDOUT")
            || denied.stdout.contains("EHOSTUNREACH")
            || denied.stdout.contains("ECONNREFUSED"),
        "{denied}"
    );
    let allowed = Hydra::run("net-egress-allow")
        .args(["--net", "partial", "--egress"])
        .sh(&script)
        .output();
    allowed.assert_ok();
    allowed.assert_stdout_contains("connect: ok");
    drop(listener);
}

#[test]
fn complete_has_only_lo_and_reaches_nothing() {
    require_root();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = Hydra::run("net-complete")
        .sh(&format!(
            "ls /sys/class/net; hydra-probe connect 127.0.0.1 {port}; hydra-probe connect 10.231.0.1 {port}; true"
        ))
        .output();
    out.assert_ok();
    let lines = out.lines();
    assert_eq!(lines[0], "lo", "{out}");
    assert!(
        lines[1].starts_with("connect: ECONNREFUSED"),
        "its own lo, not the host's: {out}"
    );
    assert!(lines[2].starts_with("connect: ENETUNREACH"), "{out}");
}

#[test]
fn a_partial_link_is_ipv4_only_and_sends_nothing_by_itself() {
    require_root();
    // Without an IPv6 link-local address, nothing (duplicate address detection, router
    // solicitation, multicast reports) leaves the process's link before it talks.
    let out = Hydra::run("net-quiet")
        .args(["--net", "partial"])
        .sh("sleep 2; cat /sys/class/net/eth0/statistics/tx_packets; ip -6 addr show dev eth0 | grep -c inet6; ip -4 addr show dev eth0 | grep -c inet; true")
        .output();
    out.assert_ok();
    assert_eq!(out.lines(), ["0", "0", "1"], "{out}");
}

#[test]
fn two_containers_map_at_once_and_one_going_leaves_the_other_intact() {
    require_root();
    let mut a = Hydra::run("net-two-a")
        .args(["-p", "18121:8080"])
        .sh(SERVERS)
        .spawn();
    let mut b = Hydra::run("net-two-b")
        .args(["-p", "18122:8080"])
        .sh(SERVERS)
        .spawn();
    a.wait_for_stdout("servers up");
    b.wait_for_stdout("servers up");
    let (a_name, b_name) = (a.name().to_string(), b.name().to_string());
    let (a_host, _) = link_of(&a_name);
    let (b_host, _) = link_of(&b_name);
    assert_ne!(a_host, b_host, "two containers share a subnet");
    let mut s = connect_retrying(SocketAddr::from(([127, 0, 0, 1], 18121)));
    assert_eq!(echo(&mut s, b"a\n"), b"a\n");
    drop(s);
    a.signal(libc::SIGTERM);
    a.wait();
    assert!(nft_chains_of(&a_name).is_empty());
    assert_eq!(nft_chains_of(&b_name).len(), 4, "b's chains went with a");
    let mut s = connect_retrying(SocketAddr::from(([127, 0, 0, 1], 18122)));
    assert_eq!(echo(&mut s, b"b\n"), b"b\n");
    drop(s);
    b.signal(libc::SIGTERM);
    b.wait();
    assert!(nft_chains_of(&b_name).is_empty());
}

#[test]
fn a_host_port_in_use_or_mapped_by_another_container_is_refused() {
    require_root();
    let busy = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = Hydra::run("net-busy")
        .args(["-p", &format!("{port}:8080")])
        .cmd(["true"])
        .output();
    out.assert_code(125);
    assert!(
        out.one_stderr_line()
            .contains(&format!("host port {port}/tcp is already in use")),
        "{out}"
    );
    drop(busy);
    // A host program on the IPv6 side of the port is in the way too.
    let busy6 = TcpListener::bind("[::1]:0").unwrap();
    let port = busy6.local_addr().unwrap().port();
    let out = Hydra::run("net-busy6")
        .args(["-p", &format!("{port}:8080")])
        .cmd(["true"])
        .output();
    out.assert_code(125);
    assert!(
        out.one_stderr_line()
            .contains(&format!("host port [::]:{port}/tcp is already in use")),
        "{out}"
    );
    drop(busy6);
    let (first, _) = serving(Hydra::run("net-clash-a").args(["-p", "18131:8080"]));
    let out = Hydra::run("net-clash-b")
        .args(["-p", "18131:8080"])
        .cmd(["true"])
        .output();
    out.assert_code(125);
    let line = out.one_stderr_line().to_string();
    assert!(
        line.contains("host port 18131/tcp is already mapped by container")
            && line.contains(first.name()),
        "{out}"
    );
    first.signal(libc::SIGTERM);
    first.wait();
}

#[test]
fn bad_network_flags_get_one_clear_line() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--net", "complete", "-p", "80:80"],
            "-p needs --net partial",
        ),
        (&["-p", "80"], "expected [IP:]HOST:CONTAINER[/udp]"),
        (&["-p", "::1:80:80"], "expected [IP:]HOST:CONTAINER[/udp]"),
        (&["--egress"], "--egress needs --net partial"),
    ];
    for (flags, wanted) in cases {
        let out = Hydra::run("net-bad")
            .args(flags.iter().copied())
            .cmd(["true"])
            .output();
        out.assert_code(125);
        assert!(out.one_stderr_line().contains(wanted), "{flags:?}: {out}");
    }
}

#[test]
fn a_killed_hydra_leaves_chains_and_link_that_gc_removes() {
    require_root();
    let (run, name) = serving(
        Hydra::run("net-gc")
            .without_clean_check()
            .args(["-p", "18141:8080"]),
    );
    let (host, _) = link_of(&name);
    let veth = veth_of(host);
    let index = ifindex(&veth);
    // Linked before the kill, so the last check below sees it go with the process.
    wait_redirected(&name);
    run.signal(libc::SIGKILL);
    run.wait();
    assert_eq!(
        nft_chains_of(&name).len(),
        4,
        "the chains are what gc must find"
    );
    let gc = Hydra::bare().arg("gc").output();
    gc.assert_ok();
    assert!(nft_chains_of(&name).is_empty(), "gc left the chains: {gc}");
    let end = Instant::now() + Duration::from_secs(5);
    while !link_gone(&veth, &index) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(link_gone(&veth, &index), "gc left {veth}");
    assert_host_clean(&name, Path::new("/run/hydra"));
    // The socket redirect went with the killed process.
    port_is_the_hosts_own(18141);
}

#[test]
fn a_mapping_to_a_process_with_count_two_spreads_connections_over_both() {
    let app = App::new(
        "net-spread",
        "isolation:\n  mode: partial\n  ports: [{internal: 8080, external: 18151, process: web}]\nprocesses:\n  - {name: web, count: 2, command: nc -ll -p 8080 -e hostname}\n",
    );
    app.up_detached();
    app.wait_for("both running", |ps| {
        ps.iter().filter(|p| p["state"] == "running").count() == 2
    });
    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut s = connect_retrying(SocketAddr::from(([127, 0, 0, 1], 18151)));
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        seen.push(answer.trim().to_string());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["web.0", "web.1"]);
    let stats = ports(&app.name);
    assert_eq!(stats[0]["targets"].as_array().unwrap().len(), 2);
    assert!(stats[0]["connections"].as_u64().unwrap() >= 4, "{stats:?}");
    // `hydra stats` shows each instance's own network bytes (its eth0, counted inside its
    // namespace): both answered, so both received and sent.
    for row in app.stats().iter().filter(|r| r["process"].is_string()) {
        assert!(row["net_rx_bytes"].as_u64().unwrap_or(0) > 0, "{row}");
        assert!(row["net_tx_bytes"].as_u64().unwrap_or(0) > 0, "{row}");
    }
    app.down().assert_ok();
    assert!(nft_chains_of(&app.name).is_empty());
}

#[test]
fn a_udp_flow_from_before_the_mapping_is_flushed_so_it_reaches_the_process() {
    require_root();
    // Connection tracking runs while hydra's nat chains exist: keep one container up so the
    // early datagram below is tracked (as it would be on any host with a NAT rule).
    let (tracker, tracker_name) = serving(Hydra::run("net-udp-tracker").args(["-p", "18162:8080"]));
    link_of(&tracker_name);
    // The client sends first, while nothing listens: conntrack now holds an untranslated flow
    // from this socket to port 18161.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    client.send_to(b"early", "127.0.0.1:18161").unwrap();
    let sport = format!("sport={} dport=18161", client.local_addr().unwrap().port());
    let tracked = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap();
    assert!(
        tracked.contains(&sport),
        "the early flow is not tracked:\n{tracked}"
    );
    let (run, name) = serving(Hydra::run("net-udp-flush").args(["-p", "18161:5353/udp"]));
    link_of(&name);
    // Same socket, same tuple: only answered if the old flow was forgotten.
    let mut answer = [0u8; 16];
    let mut got = None;
    for _ in 0..6 {
        client.send_to(b"later", "127.0.0.1:18161").unwrap();
        if let Ok((n, _)) = client.recv_from(&mut answer) {
            got = Some(answer[..n].to_vec());
            break;
        }
    }
    assert_eq!(got.as_deref(), Some(&b"later"[..]));
    for r in [run, tracker] {
        r.signal(libc::SIGTERM);
        r.wait();
    }
}

#[test]
fn without_the_nft_program_a_mapping_still_works_and_counts() {
    require_root();
    // hydra writes and reads its rules over netlink; no `nft` on PATH is needed.
    let (run, name) = serving(
        Hydra::run("net-no-nft")
            .clean_env(&[("PATH", "/var/empty")])
            .args(["-p", "18171:8080"]),
    );
    let mut s = connect_retrying(SocketAddr::from(([127, 0, 0, 1], 18171)));
    assert_eq!(echo(&mut s, b"no nft\n"), b"no nft\n");
    drop(s);
    let out = Hydra::bare()
        .clean_env(&[("PATH", "/var/empty")])
        .args(["ports", &name, "--json"])
        .output();
    out.assert_ok();
    let v: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    assert!(v[0]["connections"].as_u64() >= Some(1), "{out}");
    run.signal(libc::SIGTERM);
    run.wait();
    assert!(nft_chains_of(&name).is_empty());
}

/// `nft -j list table inet hydra`: the rules of chain `chain` as nft reads them back.
fn nft_rules(chain: &str) -> Vec<serde_json::Value> {
    let out = host_cmd("nft", &["-j", "list", "table", "inet", "hydra"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v["nftables"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o["rule"]["chain"] == chain)
        .map(|o| o["rule"].clone())
        .collect()
}

#[test]
fn nft_reads_back_the_rules_hydra_wrote_over_netlink() {
    require_root();
    let (run, name) = serving(Hydra::run("net-listing").args([
        "-p",
        "18183:8080",
        "-p",
        "127.0.0.1:18184:5353/udp",
    ]));
    let (host, guest) = link_of(&name);
    let veth = veth_of(host);
    // nft's own text of the rules, as `nft list` prints them.
    let text = host_cmd(
        "nft",
        &["list", "chain", "inet", "hydra", &format!("{name}-dnat")],
    );
    for wanted in [
        format!("meta nfproto ipv4 tcp dport 18183 counter packets 0 bytes 0 dnat ip to {guest}:8080 comment \"m0 new\""),
        format!("ip daddr 127.0.0.1 udp dport 18184 counter packets 0 bytes 0 dnat ip to {guest}:5353 comment \"m1 new\""),
    ] {
        assert!(text.contains(&wanted), "{wanted}\nnot in\n{text}");
    }
    // The same through nft's JSON: counters and comments where `hydra ports` reads them.
    let post = nft_rules(&format!("{name}-post"));
    let counted: Vec<&str> = post
        .iter()
        .filter(|r| r["expr"].to_string().contains("\"counter\""))
        .filter_map(|r| r["comment"].as_str())
        .collect();
    // TCP: the redirect's untracked first packets and the rest, translated flows, the host's
    // own tracked first packets and the rest.
    assert_eq!(
        counted,
        ["m0 local", "m0 in", "m0 in", "m0 local", "m0 in", "m1 in"],
        "{post:?}"
    );
    let host_rules = host_cmd(
        "nft",
        &["list", "chain", "inet", "hydra", &format!("{name}-post")],
    );
    let mapped = format!("oifname \"{veth}\" ip daddr {guest} tcp dport 8080");
    for wanted in [
        format!("{mapped} ct status dnat counter"),
        format!("{mapped} ct state new fib saddr type local counter"),
        format!("{mapped} ct state established,related ct direction original counter"),
    ] {
        assert!(
            host_rules.contains(&wanted),
            "{wanted}\nnot in\n{host_rules}"
        );
    }
    let pre = nft_rules(&format!("{name}-pre"));
    assert!(
        pre.last().unwrap()["expr"]
            .to_string()
            .ends_with(r#"{"drop":null}]"#),
        "no egress: the last rule drops: {pre:?}"
    );
    let snat = nft_rules(&format!("{name}-snat"));
    assert!(
        snat[0]["expr"].to_string().contains("masquerade"),
        "{snat:?}"
    );
    // The map elements lead the link and both host ports to the container's chains.
    let table = host_cmd("nft", &["list", "table", "inet", "hydra"]);
    // nft names protocols from /etc/protocols; without it (the VM of `make vm-test`) it prints
    // their numbers.
    for wanted in [
        vec![format!("\"{veth}\" : jump {name}-pre")],
        vec![
            format!("tcp . 18183 : jump {name}-dnat"),
            format!("6 . 18183 : jump {name}-dnat"),
        ],
        vec![
            format!("udp . 18184 : jump {name}-dnat"),
            format!("17 . 18184 : jump {name}-dnat"),
        ],
    ] {
        assert!(
            wanted.iter().any(|w| table.contains(w)),
            "{wanted:?}\nnot in\n{table}"
        );
    }
    run.signal(libc::SIGTERM);
    run.wait();
    assert!(nft_chains_of(&name).is_empty());
}

#[test]
fn an_internal_network_joins_its_members_by_name_and_nobody_else() {
    let app = App::new(
        "net-internal",
        "isolation: {mode: complete}\nnetworks: {back: [api, worker]}\nprocesses:\n  - {name: api, command: nc -ll -p 8080 -e hostname}\n  - {name: worker, count: 2, command: sleep 1000}\n  - {name: loner, command: sleep 1000}\n",
    );
    app.up_detached();
    app.wait_for("all running", |ps| {
        ps.iter().filter(|p| p["state"] == "running").count() == 4
    });
    let exec = |process: &str, script: &str| app.exec_sh(process, script);
    // A member reaches another by its name, through the bridge.
    let by_name = exec("worker.1", "nc api 8080");
    by_name.assert_ok();
    assert_eq!(by_name.stdout.trim(), "api", "{by_name}");
    // Members see lo and their port; the hosts file names the members only.
    let links = exec("worker.0", "ls /sys/class/net; cat /etc/hosts");
    links.assert_ok();
    assert!(
        links.stdout.contains("net0") && !links.stdout.contains("eth0"),
        "{links}"
    );
    assert!(
        links.stdout.contains("worker.0 worker") && !links.stdout.contains("loner"),
        "{links}"
    );
    let api = links
        .lines()
        .into_iter()
        .find(|l| l.ends_with("\tapi"))
        .and_then(|l| l.split('\t').next())
        .unwrap_or_else(|| panic!("no api line: {links}"))
        .to_string();
    // The process outside the network has no way to it.
    let outside = exec(
        "loner",
        &format!("ls /sys/class/net; hydra-probe connect {api} 8080"),
    );
    assert_eq!(outside.lines()[0], "lo", "{outside}");
    assert!(outside.stdout.contains("connect: ENETUNREACH"), "{outside}");
    // The bridge has no address on the host: nothing routes between it and the host.
    let gateway = api
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}.1"))
        .unwrap();
    let host = exec("worker.0", &format!("hydra-probe connect {gateway} 22"));
    assert!(!host.stdout.contains("connect: ok"), "{host}");
    let bridge = format!(
        "hyn{:06x}",
        u32::from(api.parse::<Ipv4Addr>().unwrap()) >> 8
    );
    let addresses = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &bridge])
        .output()
        .unwrap();
    assert!(addresses.status.success(), "no bridge {bridge}");
    assert!(
        addresses.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&addresses.stdout)
    );
    app.down().assert_ok();
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "{bridge} outlived the container"
    );
}

#[test]
fn partial_processes_on_an_internal_network_keep_their_own_link_too() {
    let app = App::new(
        "net-internal-partial",
        "isolation:\n  mode: partial\n  ports: [{internal: 8080, external: 18181, process: api}]\nnetworks: {back: [api, worker]}\nprocesses:\n  - {name: api, command: nc -ll -p 8080 -e hostname}\n  - {name: worker, command: sleep 1000}\n",
    );
    app.up_detached();
    app.wait_for("both running", |ps| {
        ps.iter().filter(|p| p["state"] == "running").count() == 2
    });
    let out = app.exec_sh("worker", "ls /sys/class/net; nc api 8080");
    out.assert_ok();
    assert_eq!(out.lines(), ["eth0", "lo", "net0", "api"], "{out}");
    let mut s = connect_retrying(SocketAddr::from(([127, 0, 0, 1], 18181)));
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert_eq!(answer.trim(), "api");
    app.down().assert_ok();
}

#[test]
fn networks_with_the_host_network_are_refused() {
    let app = App::new(
        "net-internal-none",
        "isolation: {mode: none}\nnetworks: {back: [a]}\nprocesses:\n  - {name: a, command: sleep 1}\n",
    );
    let out = Hydra::bare()
        .args(["up", "-d", "-f"])
        .arg(app.file())
        .output();
    out.assert_code(125);
    assert!(
        out.one_stderr_line()
            .contains("networks need isolation mode partial or complete"),
        "{out}"
    );
    assert!(!Path::new("/run/hydra").join(&app.name).exists());
}

#[test]
fn egress_allow_never_reaches_another_processs_link() {
    let app = App::new(
        "net-egress-links",
        "isolation: {mode: partial}\nprocesses:\n  - {name: target, command: nc -ll -p 8080 -e hostname}\n  - {name: open, command: sleep 1000, egress: allow}\n",
    );
    app.up_detached();
    app.wait_for("both running", |ps| {
        ps.iter().filter(|p| p["state"] == "running").count() == 2
    });
    let exec = |process: &str, script: &str| app.exec_sh(process, script);
    let addr = exec(
        "target",
        "ip -4 -o addr show eth0 | sed 's/.* inet \\([0-9.]*\\).*/\\1/'",
    );
    addr.assert_ok();
    let target = addr.stdout.trim().to_string();
    // The address answers from inside its own namespace: what follows is the firewall.
    let own = exec("target", &format!("hydra-probe connect {target} 8080"));
    own.assert_stdout_contains("connect: ok");
    // `open` may reach the host (its gateway), never another process's link.
    let host = exec(
        "open",
        "set -- $(ip route | grep default); hydra-probe connect $3 1; true",
    );
    assert!(
        host.stdout.contains("ECONNREFUSED"),
        "the host answers (refused): {host}"
    );
    let other = exec("open", &format!("hydra-probe connect {target} 8080; true"));
    assert!(other.stdout.contains("connect: ETIMEDOUT"), "{other}");
    app.down().assert_ok();
}

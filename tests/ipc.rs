//! `hydra ipc` between virtual processes of a `hydra up` container: request/reply through a
//! shell-script server, a million messages complete and in order, a process not listed for a
//! channel cannot reach it, a sender killed mid-stream does not stop the channel, and a member
//! that scribbles over the channel's memory crashes nobody. The processes run hydra's own
//! binary, which IPC processes see read-only at /usr/local/bin/hydra.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::time::{Duration, Instant};

/// The log of one process of a detached container (`hydra logs NAME/PROC`).
fn log_of(app: &App, process: &str) -> String {
    let out = Hydra::bare()
        .args(["logs", &format!("{}/{process}", app.name)])
        .output();
    out.assert_ok();
    out.stdout
}

/// Polls the log of `process` (bounded) until `done` holds; returns the log.
fn wait_for_log(app: &App, process: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + limit;
    loop {
        let log = log_of(app, process);
        if done(&log) {
            return log;
        }
        assert!(
            Instant::now() < end,
            "{process} never got there; its log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `hydra ipc stats NAME --json` on the host: one object per queue.
fn ipc_stats(app: &App) -> Vec<Value> {
    let out = Hydra::bare()
        .args(["ipc", "stats", &app.name, "--json"])
        .output();
    out.assert_ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ipc stats --json: {e}\n{out}"))
}

fn queue<'a>(stats: &'a [Value], name: &str) -> &'a Value {
    stats
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name}: {stats:#?}"))
}

fn count(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count: {v}"))
}

#[test]
fn each_client_of_a_shell_script_server_gets_its_own_answers() {
    // The server answers exactly the 2 × 5 requests, then ends; every process ends by itself.
    let app = App::new(
        "ipc-rpc",
        "\
ipc:
  channels:
    - {name: requests, reply: true, senders: [client], receivers: [server]}
processes:
  - name: server
    command: ['hydra', 'ipc', 'serve', 'requests', '--count', '10', '--timeout', '15s', '--',
              'sh', '-c', 'read x; echo \"answer to $x\"']
  - name: client
    count: 2
    command:
      - sh
      - -c
      - |
        k=$HYDRA_IPC_REQUESTS_CLIENT
        echo \"k=$k\"
        for i in 1 2 3 4 5; do
          echo \"got $(hydra ipc request requests \"client $k question $i\" --timeout 10s)\"
        done
",
    );
    let out = app.up_foreground();
    let mut seen = Vec::new();
    for instance in ["client.0", "client.1"] {
        let lines = said(&out, instance);
        let k = lines
            .iter()
            .find_map(|l| l.strip_prefix("k="))
            .unwrap_or_else(|| panic!("{instance} has no client index\n{out}"))
            .to_string();
        let got: Vec<&String> = lines.iter().filter(|l| l.starts_with("got")).collect();
        let want: Vec<String> = (1..=5)
            .map(|i| format!("got answer to client {k} question {i}"))
            .collect();
        assert_eq!(got, want.iter().collect::<Vec<_>>(), "{instance}\n{out}");
        seen.push(k);
    }
    assert_ne!(seen[0], seen[1], "both clients have one index\n{out}");
}

/// How many messages the bulk test sends: a million, unless `HYDRA_TEST_IPC_MESSAGES` says
/// otherwise (`make vm-test` runs under software emulation, some thirty times slower).
fn bulk_messages() -> u64 {
    std::env::var("HYDRA_TEST_IPC_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

#[test]
fn a_million_messages_arrive_complete_and_in_order() {
    require_root();
    let n = bulk_messages();
    let app = App::new(
        "ipc-bulk",
        &format!(
            "\
ipc:
  channels:
    - {{name: bulk, senders: [tx], receivers: [rx]}}
processes:
  - {{name: tx, command: ['sh', '-c', 'seq {n} | hydra ipc send bulk - && echo sent']}}
  - name: rx
    command: ['sh', '-c', 'hydra ipc recv bulk --count {n} --timeout 15s | md5sum; echo received; sleep 1000']
"
        ),
    );
    let want = host_cmd("sh", &["-c", &format!("seq 1 {n} | md5sum")]);
    let want = want.split_whitespace().next().expect("md5sum output");
    app.up_detached();
    let rx = wait_for_log(&app, "rx", Duration::from_secs(18), |l| {
        l.contains("received")
    });
    assert!(rx.contains(want), "rx's checksum is not {want}:\n{rx}");
    let tx = wait_for_log(&app, "tx", Duration::from_secs(2), |l| l.contains("sent"));
    assert!(tx.contains("sent"), "{tx}");
    // The host sees the traffic through the supervisor's memfd.
    let stats = ipc_stats(&app);
    let bulk = queue(&stats, "bulk");
    assert_eq!(bulk["kind"], "channel", "{bulk}");
    assert_eq!(count(bulk, "sent_messages"), n, "{bulk}");
    assert_eq!(count(bulk, "received_messages"), n, "{bulk}");
    assert_eq!(count(bulk, "depth"), 0, "{bulk}");
    // The digits of 1..=n, without the newlines (5,888,896 bytes for a million).
    let digits: u64 = (1..=n).map(|i| i.to_string().len() as u64).sum();
    assert_eq!(count(bulk, "sent_bytes"), digits, "{bulk}");
    assert_eq!(count(bulk, "received_bytes"), digits, "{bulk}");
    // The table, and `hydra stats` with the channel under the processes.
    let table = Hydra::bare().args(["ipc", "stats", &app.name]).output();
    table.assert_ok();
    assert!(table.lines()[0].starts_with("CHANNEL"), "{table}");
    table.assert_stdout_contains(&format!(
        "{n} / {}",
        hydra::config::units::format_size(digits)
    ));
    let rows = app.stats();
    let container = rows
        .iter()
        .find(|r| r["process"].is_null())
        .expect("container row");
    assert_eq!(
        count(
            queue(container["ipc"].as_array().expect("ipc"), "bulk"),
            "sent_messages"
        ),
        n,
        "{container}"
    );
    let top = Hydra::bare()
        .args(["stats", "--no-stream", &app.name])
        .output();
    top.assert_ok();
    assert!(
        top.lines()
            .iter()
            .any(|l| l.starts_with(&app.name) && l.contains("bulk") && l.contains(&n.to_string())),
        "{top}"
    );
    app.down().assert_ok();
}

#[test]
fn a_process_not_listed_for_a_channel_cannot_reach_it() {
    // `member` has the channel; `neighbour` has another one (so hydra is there) and `outsider`
    // none at all.
    let look = "env | grep ^HYDRA_IPC_ | sed \"s/^/var /\"; \
        for f in /proc/[0-9]*/fd/*; do readlink $f; done 2>/dev/null | grep memfd | sed \"s/^/fd /\"; \
        echo \"pids $(ls -d /proc/[0-9]* | wc -l)\"";
    let app = App::new(
        "ipc-unlisted",
        &format!(
            "\
ipc:
  channels:
    - {{name: chan, senders: [member], receivers: [member]}}
    - {{name: other, senders: [neighbour], receivers: [neighbour]}}
processes:
  - {{name: member, command: ['sh', '-c', 'hydra ipc send chan ping && hydra ipc recv chan --timeout 5s']}}
  - name: neighbour
    command:
      - sh
      - -c
      - |
        {look}
        hydra ipc send chan x 2>/tmp/err; echo \"send exit $?\"
        sed \"s/^/err /\" /tmp/err
        hydra ipc recv chan --timeout 1s 2>/tmp/err; echo \"recv exit $?\"
        sed \"s/^/err /\" /tmp/err
  - {{name: outsider, command: ['sh', '-c', '{look}; command -v hydra || echo no hydra']}}
"
        ),
    );
    let out = app.up_foreground();
    assert_eq!(said(&out, "member"), ["ping"], "{out}");

    let neighbour = said(&out, "neighbour");
    let vars: Vec<&String> = neighbour.iter().filter(|l| l.starts_with("var ")).collect();
    assert_eq!(vars, ["var HYDRA_IPC_OTHER=3"], "{out}");
    let fds: Vec<&String> = neighbour.iter().filter(|l| l.starts_with("fd ")).collect();
    assert!(
        !fds.is_empty() && fds.iter().all(|l| l.contains("hydra:other")),
        "the neighbour sees only its own channel's memfd\n{out}"
    );
    for op in ["send", "recv"] {
        assert!(
            neighbour.contains(&format!("{op} exit 125")),
            "{op} did not fail as hydra's failure\n{out}"
        );
    }
    let errors: Vec<&String> = neighbour.iter().filter(|l| l.starts_with("err ")).collect();
    assert_eq!(errors.len(), 2, "one line per failed command\n{out}");
    for e in errors {
        assert!(
            e.contains("no channel chan: this process was not given it"),
            "{e}\n{out}"
        );
    }

    let outsider = said(&out, "outsider");
    assert!(
        !outsider
            .iter()
            .any(|l| l.starts_with("var ") || l.starts_with("fd ")),
        "{out}"
    );
    assert!(outsider.iter().any(|l| l == "no hydra"), "{out}");
    // Its own pid namespace: its init, the shell, ls — never the member.
    for lines in [&neighbour, &outsider] {
        let pids: usize = lines
            .iter()
            .find_map(|l| l.strip_prefix("pids "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid count\n{out}"));
        assert!(pids <= 7, "{pids} pids visible\n{out}");
    }
}

/// The host pids of `hydra ipc send` processes below `pid`.
fn senders_below(pid: i32) -> Vec<i32> {
    descendants(pid)
        .into_iter()
        .filter(|p| {
            fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| {
                    let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
                    args.windows(2).any(|w| w == [&b"ipc"[..], &b"send"[..]])
                })
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn a_sender_killed_mid_stream_leaves_the_channel_working() {
    // tx1 streams as fast as rx takes; once the channel's sent count stops moving (tx1 died),
    // tx2 sends 100 numbered messages. rx prints everything but tx1's.
    let app = App::new(
        "ipc-kill",
        "\
ipc:
  channels:
    - {name: stream, capacity: 8, senders: [tx1, tx2], receivers: [rx]}
processes:
  - {name: tx1, command: ['sh', '-c', 'yes first | hydra ipc send stream -']}
  - name: tx2
    command:
      - sh
      - -c
      - |
        sent() { hydra ipc stats stream --json | grep sent_messages | tr -dc 0-9; }
        last=$(sent)
        for i in $(seq 100); do
          sleep 0.2
          now=$(sent)
          [ \"$now\" -gt 100 ] && [ \"$now\" = \"$last\" ] && break
          last=$now
        done
        echo \"tx1 stopped at $now\"
        seq 100 | sed \"s/^/second /\" | hydra ipc send stream - --timeout 5s && echo done
  - name: rx
    command: ['sh', '-c', 'hydra ipc recv stream --count 0 | while read l; do [ \"$l\" = first ] || echo \"$l\"; done']
",
    );
    app.up_detached();
    // Wait until tx1 streams, then SIGKILL its sending hydra in the middle of it.
    let end = Instant::now() + Duration::from_secs(10);
    while count(queue(&ipc_stats(&app), "stream"), "sent_messages") < 1000 {
        assert!(Instant::now() < end, "tx1 never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
    let tx1 = app.process("tx1")["pid"].as_i64().expect("tx1 pid") as i32;
    let senders = senders_below(tx1);
    assert_eq!(senders.len(), 1, "tx1's sender: {senders:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(senders[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    let tx2 = wait_for_log(&app, "tx2", Duration::from_secs(15), |l| l.contains("done"));
    assert!(tx2.contains("tx1 stopped at"), "{tx2}");
    let rx = wait_for_log(&app, "rx", Duration::from_secs(10), |l| {
        l.contains("second 100")
    });
    let got: Vec<&str> = rx.lines().filter(|l| l.starts_with("second")).collect();
    let want: Vec<String> = (1..=100).map(|i| format!("second {i}")).collect();
    assert_eq!(got, want, "rx:\n{rx}");
    assert!(
        rx.lines().all(|l| l.starts_with("second")),
        "rx printed something else:\n{rx}"
    );
    app.down().assert_ok();
}

#[test]
fn a_member_scribbling_over_the_channel_crashes_nobody() {
    // evil is listed on both ends, so it holds the memfd; while tx and rx use the channel it
    // overwrites with random bytes the first slots (the header intact), then the header, then
    // the whole file, and stays (so the container does).
    // Every command's exit code is printed: a signal would show as 128 + N.
    let app = App::new(
        "ipc-hostile",
        "\
ipc:
  channels:
    - {name: chan, capacity: 16, max_message: 1KB, senders: [evil, tx], receivers: [evil, rx]}
processes:
  - name: evil
    command:
      - sh
      - -c
      - |
        f=/proc/self/fd/$HYDRA_IPC_CHAN
        sleep 0.5
        dd if=/dev/urandom of=$f bs=4096 seek=1 count=4 conv=notrunc 2>/dev/null; echo \"slots $?\"
        sleep 0.5
        hydra ipc recv chan --count 0 --timeout 300ms >/dev/null 2>&1; echo \"evil recv $?\"
        dd if=/dev/urandom of=$f bs=4096 count=1 conv=notrunc 2>/dev/null; echo \"header $?\"
        sleep 0.5
        size=$(wc -c < $f)
        dd if=/dev/urandom of=$f bs=$size count=1 conv=notrunc 2>/dev/null; echo \"all $? $size\"
        hydra ipc recv chan --timeout 500ms >/dev/null 2>&1; echo \"evil recv $?\"
        hydra ipc send chan x --timeout 500ms 2>/dev/null; echo \"evil send $?\"
        hydra ipc stats chan >/dev/null 2>&1; echo \"evil stats $?\"
        echo evil done
        sleep 1000
  - name: tx
    command:
      - sh
      - -c
      - |
        for i in $(seq 30); do hydra ipc send chan \"m$i\" --timeout 100ms 2>/dev/null; echo \"tx $?\"; sleep 0.05; done
        echo tx done
  - name: rx
    command:
      - sh
      - -c
      - |
        for i in $(seq 30); do hydra ipc recv chan --timeout 100ms >/dev/null 2>&1; echo \"rx $?\"; done
        timeout 10 hydra ipc recv chan --count 1000000 --timeout 1s >/dev/null 2>&1; echo \"rx last $?\"
        echo rx done
",
    );
    app.up_detached();
    let limit = Duration::from_secs(15);
    let evil = wait_for_log(&app, "evil", limit, |l| l.contains("evil done"));
    assert!(evil.contains("slots 0"), "{evil}");
    assert!(evil.contains("header 0"), "{evil}");
    assert!(evil.contains("all 0 "), "{evil}");
    let tx = wait_for_log(&app, "tx", limit, |l| l.contains("tx done"));
    let rx = wait_for_log(&app, "rx", limit, |l| l.contains("rx done"));
    // 0: worked; 1: timed out; 125: an error said so. Never a signal; never `timeout`'s 124 or
    // 143 (the receiver always gave up by itself).
    for (who, log) in [("evil", &evil), ("tx", &tx), ("rx", &rx)] {
        for line in log.lines() {
            let Some(code) = line.rsplit(' ').next().and_then(|c| c.parse::<u32>().ok()) else {
                continue;
            };
            if line.starts_with("all ") {
                continue;
            }
            assert!(
                matches!(code, 0 | 1 | 125),
                "{who}: {line:?} (a crash or a hang)\n{log}"
            );
        }
    }
    // The supervisor is unharmed and the host-side readers survive the garbage.
    assert_eq!(app.ps().len(), 3);
    let stats = Hydra::bare().args(["ipc", "stats", &app.name]).output();
    assert!(
        matches!(stats.code(), 0 | 125),
        "ipc stats on a scribbled channel\n{stats}"
    );
    app.stats();
    app.down().assert_ok();
}

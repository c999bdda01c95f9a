//! IPC plumbing under `hydra up`: the supervisor creates the declared channels, reply queues
//! and shared memory (sealed memfds) and hands each only to the processes listed for it, at fds
//! 3, 4, … announced in `HYDRA_IPC_<NAME>`; those processes also see hydra's own binary,
//! read-only, at /usr/local/bin/hydra. Everything is checked from inside the processes.

mod common;

use common::rootless::RootlessUser;
use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Prints the IPC variables (sorted), what each fd among them is, and every fd's target.
const SHOW: &str = "env | grep ^HYDRA_IPC_ | sort; \
    for v in $(env | grep ^HYDRA_IPC_ | grep -v CLIENT | cut -d= -f2 | sort -u); do \
    echo \"fd $v $(readlink /proc/self/fd/$v)\"; done; \
    ls -l /proc/self/fd 2>/dev/null | grep -c memfd | sed \"s/^/memfds /\"";

/// The script of a process that shares memory region MEM: the writer writes `hello`, the
/// reader waits (bounded) until it reads it.
const WRITE_MEM: &str =
    "printf hello | dd of=/proc/self/fd/$HYDRA_IPC_MEM conv=notrunc 2>/dev/null && echo written";
const READ_MEM: &str = "for i in $(seq 200); do \
    v=$(dd if=/proc/self/fd/$HYDRA_IPC_MEM bs=5 count=1 2>/dev/null | tr -d \"\\000\"); \
    [ \"$v\" = hello ] && break; sleep 0.05; done; echo \"read $v\"";

/// Proves /usr/local/bin/hydra is there, runs, and cannot be changed.
const CHECK_BINARY: &str = "test -x /usr/local/bin/hydra && echo present; \
    echo x >> /usr/local/bin/hydra && echo APPENDED; \
    chmod 4755 /usr/local/bin/hydra && echo CHMODDED; \
    touch /usr/local/bin/hydra && echo TOUCHED; \
    grep \" /usr/local/bin/hydra \" /proc/self/mountinfo | cut -d\" \" -f6 | sed \"s/^/options /\"; \
    /usr/local/bin/hydra --version";

fn assert_binary_read_only(lines: &[String], all: &Output) {
    assert!(lines.iter().any(|l| l == "present"), "{all}");
    for bad in ["APPENDED", "CHMODDED", "TOUCHED"] {
        assert!(!lines.iter().any(|l| l == bad), "{bad}\n{all}");
    }
    let options = lines
        .iter()
        .find_map(|l| l.strip_prefix("options "))
        .unwrap_or_else(|| panic!("no mount at /usr/local/bin/hydra\n{all}"));
    let options: Vec<&str> = options.split(',').collect();
    for flag in ["ro", "nosuid", "nodev"] {
        assert!(
            options.contains(&flag),
            "{flag} missing: {options:?}\n{all}"
        );
    }
    assert!(lines.iter().any(|l| l.starts_with("hydra ")), "{all}");
}

/// Size, mtime and mode of the host's binary (to prove nothing inside changed it).
fn binary_fingerprint(path: &Path) -> (u64, i64, i64, u32) {
    let md = fs::metadata(path).expect("hydra binary");
    (md.size(), md.mtime(), md.mtime_nsec(), md.mode())
}

#[test]
fn a_listed_process_gets_its_memfd_and_an_unlisted_one_nothing() {
    let app = App::new(
        "ipc-listed",
        &format!(
            "processes:
  - {{name: listed, command: ['sh', '-c', '{SHOW}']}}
  - {{name: unlisted, command: ['sh', '-c', 'echo \"vars $(env | grep -c HYDRA_IPC)\"; ls -l /proc/self/fd; test -e /usr/local/bin/hydra && echo HAS-HYDRA || echo no-hydra']}}
ipc:
  channels:
    - {{name: jobs, senders: [listed]}}
"
        ),
    );
    let out = app.up_foreground();
    let listed = said(&out, "listed");
    assert!(listed.contains(&"HYDRA_IPC_JOBS=3".to_string()), "{out}");
    assert!(
        listed.contains(&"fd 3 /memfd:hydra:jobs (deleted)".to_string()),
        "{out}"
    );
    assert!(listed.contains(&"memfds 1".to_string()), "{out}");
    let unlisted = said(&out, "unlisted");
    assert!(unlisted.contains(&"vars 0".to_string()), "{out}");
    assert!(!unlisted.iter().any(|l| l.contains("memfd")), "{out}");
    assert!(unlisted.contains(&"no-hydra".to_string()), "{out}");
    // Stdio, and the directory `ls` reads: nothing else reached the unlisted process.
    let fds: Vec<&String> = unlisted.iter().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(fds.len(), 3, "{out}");
}

#[test]
fn fds_and_objects_stay_the_same_across_restarts() {
    let app = App::new(
        "ipc-restart",
        "processes:
  - name: again
    restart: always
    command:
      - sh
      - -c
      - >-
        prev=$(dd if=/proc/self/fd/$HYDRA_IPC_MEM bs=4 count=1 2>/dev/null | tr -d '\\000');
        printf seen | dd of=/proc/self/fd/$HYDRA_IPC_MEM conv=notrunc 2>/dev/null;
        echo \"run $HYDRA_IPC_JOBS $HYDRA_IPC_MEM $(stat -L -c %i /proc/self/fd/$HYDRA_IPC_JOBS) $(stat -L -c %i /proc/self/fd/$HYDRA_IPC_MEM) prev=$prev\";
        sleep 0.2
  - {name: idle, command: sleep 1000}
ipc:
  channels:
    - {name: jobs, receivers: [again], capacity: 16}
  shared_memory:
    - {name: mem, size: 4096, processes: [again]}
",
    );
    app.up_detached();
    let end = Instant::now() + Duration::from_secs(20);
    let runs = loop {
        let logs = Hydra::bare()
            .args(["logs", &format!("{}/again", app.name)])
            .output();
        let runs: Vec<String> = logs
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("run "))
            .map(str::to_string)
            .collect();
        if runs.len() >= 3 {
            break runs;
        }
        assert!(Instant::now() < end, "fewer than 3 runs\n{logs}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Same fd numbers, same memfds (inodes), and the region kept what the first run wrote.
    let fields = |l: &str| l.split(' ').take(5).collect::<Vec<_>>().join(" ");
    assert!(runs[0].starts_with("run 3 4 "), "{runs:?}");
    assert!(runs[0].ends_with("prev="), "{runs:?}");
    for r in &runs[1..] {
        assert_eq!(fields(r), fields(&runs[0]), "{runs:?}");
        assert!(r.ends_with("prev=seen"), "{runs:?}");
    }
    // The record names the supervisor and its fds; a host-side reader gets the statistics.
    let dir = Path::new("/run/hydra").join(&app.name);
    let record = hydra::ipc::manager::load(&dir).expect("ipc.json");
    let kinds: Vec<(&str, &str)> = record
        .objects
        .iter()
        .map(|o| (o.name.as_str(), o.env.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("jobs", "HYDRA_IPC_JOBS"), ("mem", "HYDRA_IPC_MEM")],
        "{record:?}"
    );
    let jobs = &record.objects[0];
    let link = fs::read_link(format!("/proc/{}/fd/{}", record.pid, jobs.fd)).expect("link");
    assert_eq!(link, PathBuf::from("/memfd:hydra:jobs (deleted)"));
    let stats = hydra::ipc::manager::channel_stats(&dir).expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].name, "jobs");
    assert_eq!(stats[0].stats.capacity, 16);
    assert_eq!(stats[0].stats.sent_messages, 0);
    app.down().assert_ok();
}

#[test]
fn hydra_is_inside_read_only_and_the_host_binary_untouched() {
    let before = binary_fingerprint(&hydra_bin());
    let app = App::new(
        "ipc-binary",
        &format!(
            "processes:
  - {{name: user, command: ['sh', '-c', '{CHECK_BINARY}']}}
ipc:
  shared_memory:
    - {{name: m, size: 4096, processes: [user]}}
"
        ),
    );
    let out = app.up_foreground();
    assert_binary_read_only(&said(&out, "user"), &out);
    assert_eq!(binary_fingerprint(&hydra_bin()), before);
}

#[test]
fn a_reply_channel_gives_each_client_its_queue_and_the_server_all() {
    let app = App::new(
        "ipc-reply",
        &format!(
            "processes:
  - {{name: server, command: ['sh', '-c', '{SHOW}']}}
  - {{name: client, count: 2, command: ['sh', '-c', '{SHOW}']}}
  - {{name: bystander, command: ['sh', '-c', '{SHOW}']}}
ipc:
  channels:
    - {{name: rpc, reply: true, senders: [client], receivers: [server]}}
"
        ),
    );
    let out = app.up_foreground();
    let lines = |p: &str| {
        let mut l = said(&out, p);
        l.sort();
        l
    };
    let sorted = |v: &[&str]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(
        lines("server"),
        sorted(&[
            "HYDRA_IPC_RPC=3",
            "HYDRA_IPC_RPC_REPLY_0=4",
            "HYDRA_IPC_RPC_REPLY_1=5",
            "HYDRA_IPC_RPC_CLIENTS=2",
            "fd 3 /memfd:hydra:rpc (deleted)",
            "fd 4 /memfd:hydra:rpc.reply.0 (deleted)",
            "fd 5 /memfd:hydra:rpc.reply.1 (deleted)",
            "memfds 3",
        ]),
        "{out}"
    );
    for k in 0..2 {
        assert_eq!(
            lines(&format!("client.{k}")),
            sorted(&[
                "HYDRA_IPC_RPC=3",
                "HYDRA_IPC_RPC_REPLY=4",
                &format!("HYDRA_IPC_RPC_CLIENT={k}"),
                "fd 3 /memfd:hydra:rpc (deleted)",
                &format!("fd 4 /memfd:hydra:rpc.reply.{k} (deleted)"),
                "memfds 2",
            ]),
            "{out}"
        );
    }
    assert_eq!(lines("bystander"), ["memfds 0"], "{out}");
}

#[test]
fn two_processes_share_one_memory_region() {
    let app = App::new(
        "ipc-shm",
        &format!(
            "processes:
  - {{name: writer, command: ['sh', '-c', '{WRITE_MEM}']}}
  - {{name: reader, command: ['sh', '-c', '{READ_MEM}']}}
ipc:
  shared_memory:
    - {{name: mem, size: 64KB, processes: [writer, reader]}}
"
        ),
    );
    let out = app.up_foreground();
    assert_eq!(said(&out, "writer"), ["written"], "{out}");
    assert_eq!(said(&out, "reader"), ["read hello"], "{out}");
}

#[test]
fn all_of_it_at_the_strict_level() {
    let before = binary_fingerprint(&hydra_bin());
    let app = App::new(
        "ipc-strict",
        &format!(
            "security: {{security_level: strict}}
processes:
  - {{name: writer, command: ['sh', '-c', '{WRITE_MEM}; {SHOW}; {CHECK_BINARY}']}}
  - {{name: reader, command: ['sh', '-c', '{READ_MEM}']}}
  - {{name: other, command: ['sh', '-c', '{SHOW}; test -e /usr/local/bin/hydra && echo HAS-HYDRA']}}
ipc:
  channels:
    - {{name: jobs, senders: [writer], receivers: [reader]}}
  shared_memory:
    - {{name: mem, size: 4096, processes: [writer, reader]}}
"
        ),
    );
    let out = app.up_foreground();
    let writer = said(&out, "writer");
    assert!(writer.contains(&"written".to_string()), "{out}");
    assert!(writer.contains(&"HYDRA_IPC_JOBS=3".to_string()), "{out}");
    assert!(writer.contains(&"HYDRA_IPC_MEM=4".to_string()), "{out}");
    assert!(
        writer.contains(&"fd 4 /memfd:hydra:mem (deleted)".to_string()),
        "{out}"
    );
    assert_binary_read_only(&writer, &out);
    assert_eq!(said(&out, "reader"), ["read hello"], "{out}");
    assert_eq!(said(&out, "other"), ["memfds 0"], "{out}");
    assert_eq!(binary_fingerprint(&hydra_bin()), before);
}

#[test]
fn all_of_it_rootless() {
    let u = RootlessUser::new();
    let name = unique_name("ipc-rl");
    let yaml = u.dir.join("hydra.yaml");
    fs::write(
        &yaml,
        format!(
            "version: '1.0'
container: {{name: {name}, rootfs: {}}}
processes:
  - {{name: writer, command: ['sh', '-c', '{WRITE_MEM}; {SHOW}; {CHECK_BINARY}']}}
  - {{name: reader, command: ['sh', '-c', '{READ_MEM}']}}
  - {{name: other, command: ['sh', '-c', '{SHOW}']}}
ipc:
  channels:
    - {{name: jobs, reply: true, senders: [writer], receivers: [reader]}}
  shared_memory:
    - {{name: mem, size: 4096, processes: [writer, reader]}}
",
            u.rootfs().display()
        ),
    )
    .expect("writing hydra.yaml");
    host_cmd(
        "chown",
        &[&format!("{}:{}", u.uid, u.gid), &yaml.display().to_string()],
    );
    let before = binary_fingerprint(&u.hydra());
    let out = u
        .as_user(Hydra::bare())
        .args(["up", "-f"])
        .arg(&yaml)
        .output();
    out.assert_ok();
    let writer = said(&out, "writer");
    for want in [
        "written",
        "HYDRA_IPC_JOBS=3",
        "HYDRA_IPC_JOBS_REPLY=4",
        "HYDRA_IPC_JOBS_CLIENT=0",
        "HYDRA_IPC_MEM=5",
        "fd 3 /memfd:hydra:jobs (deleted)",
        "fd 4 /memfd:hydra:jobs.reply.0 (deleted)",
        "fd 5 /memfd:hydra:mem (deleted)",
    ] {
        assert!(writer.contains(&want.to_string()), "{want}\n{out}");
    }
    assert_binary_read_only(&writer, &out);
    assert_eq!(said(&out, "reader"), ["read hello"], "{out}");
    assert_eq!(said(&out, "other"), ["memfds 0"], "{out}");
    assert_eq!(binary_fingerprint(&u.hydra()), before);
    assert_host_clean(&name, &u.state_root());
}

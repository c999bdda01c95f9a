//! `hydra ipc`: messages on the channels a YAML file declares.
//!
//! Inside a virtual process (hydra's own binary is at /usr/local/bin/hydra there) it works on the
//! channels that process was given (`HYDRA_IPC_<NAME>`):
//! - `send CHANNEL [MSG]`: one message; without MSG (or with `-`) every line of stdin is one
//!   message, without its newline.
//! - `recv CHANNEL [--count N]`: prints each message and a newline (`--count 0`: until the
//!   timeout, or forever).
//! - `request CHANNEL MSG`: a call on a `reply: true` channel; prints the reply.
//! - `serve CHANNEL -- CMD [ARG...]`: answers each request with what CMD prints when given the
//!   request (and a newline) on stdin, so a shell script can be a server.
//! - `stats CHANNEL`: the channel's counters.
//!
//! On the host, `stats CONTAINER` lists the counters of every channel of a running container,
//! read through read-only opens of its supervisor's memfds (`ipc::manager::channel_stats`).
//!
//! `--timeout` bounds each wait: for room in a full queue (`send`), for the next message
//! (`recv`, `serve`), for the reply (`request`). A timeout is exit code 1 with one line on
//! stderr; any other failure is hydra's usual one line and exit code 125.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::config::duration::parse_duration;
use crate::config::units::format_size;
use crate::ipc::manager::{self, ObjectKind};
use crate::ipc::queue::{self, Queue, QueueError, Stats};
use crate::ipc::rpc::{Client, RpcError, Server};
use crate::kernel::state;

#[derive(Debug, Args)]
pub struct IpcArgs {
    #[command(subcommand)]
    pub command: IpcCommand,
}

#[derive(Debug, Subcommand)]
pub enum IpcCommand {
    /// Send MSG, or every line of stdin as one message (no MSG, or `-`).
    Send(SendArgs),
    /// Receive messages and print each with a newline.
    Recv(RecvArgs),
    /// Send a request on a `reply: true` channel and print the reply.
    Request(RequestArgs),
    /// Answer each request with the output of CMD run with the request on its stdin.
    Serve(ServeArgs),
    /// A channel's counters (inside a process), or every channel of a container (on the host).
    Stats(IpcStatsArgs),
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The channel (as the YAML names it).
    pub channel: String,
    /// The message; none or `-`: each line of stdin is one message.
    pub message: Option<OsString>,
    /// How long to wait for room while the queue is full (5s, 500ms); default: forever.
    #[arg(long, value_name = "T", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct RecvArgs {
    pub channel: String,
    /// How many messages; 0: until the timeout (or forever).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub count: u64,
    /// How long to wait for each message; default: forever.
    #[arg(long, value_name = "T", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    pub channel: String,
    /// The request; `-`: all of stdin (without one trailing newline).
    pub message: OsString,
    /// How long to wait for the reply; default: forever.
    #[arg(long, value_name = "T", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    pub channel: String,
    /// How many requests to answer; 0: forever (or until the timeout).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub count: u64,
    /// How long to wait for each request; default: forever.
    #[arg(long, value_name = "T", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// The handler and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct IpcStatsArgs {
    /// A channel of this process, or (on the host) a running container.
    pub name: String,
    /// As JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: IpcArgs) -> anyhow::Result<i32> {
    match args.command {
        IpcCommand::Send(a) => send(a),
        IpcCommand::Recv(a) => recv(a),
        IpcCommand::Request(a) => request(a),
        IpcCommand::Serve(a) => serve(a),
        IpcCommand::Stats(a) => stats(a),
    }
}

/// A library error as one line: its own message only. (Several of them repeat their source in
/// their message, which `{:#}` would print a second time.)
fn flat(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
pub fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing stdout"),
        _ => Ok(()),
    }
}

/// Prints the one line of a timeout and gives its exit code.
fn timed_out(what: &str) -> i32 {
    eprintln!("hydra: {what}");
    1
}

// ---- send ----------------------------------------------------------------------------------

fn send_one(q: &Queue, msg: &[u8], timeout: Option<Duration>) -> Result<(), QueueError> {
    match timeout {
        Some(t) => q.send_timeout(msg, t),
        None => q.send(msg),
    }
}

/// Why `send_lines` stopped early.
#[derive(Debug)]
enum SendStop {
    /// Line `line` could not be sent.
    Queue {
        line: u64,
        error: QueueError,
    },
    Read(std::io::Error),
}

/// Sends every line of `input` (without its `\n`; a last line without one counts too) as one
/// message; returns how many were sent.
fn send_lines(
    q: &Queue,
    mut input: impl BufRead,
    timeout: Option<Duration>,
) -> Result<u64, SendStop> {
    let mut line = Vec::with_capacity(256);
    let mut sent = 0u64;
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(sent),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SendStop::Read(e)),
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        send_one(q, &line, timeout).map_err(|error| SendStop::Queue {
            line: sent + 1,
            error,
        })?;
        sent += 1;
    }
}

fn send(args: SendArgs) -> anyhow::Result<i32> {
    let q = Queue::from_env(&args.channel).map_err(flat)?;
    let full = |t: Duration| {
        timed_out(&format!(
            "ipc send {}: the channel stayed full for {t:?}",
            args.channel
        ))
    };
    match args.message.as_deref().map(OsStrExt::as_bytes) {
        Some(msg) if msg != b"-" => match send_one(&q, msg, args.timeout) {
            Ok(()) => Ok(0),
            Err(QueueError::TimedOut) => Ok(full(args.timeout.unwrap_or_default())),
            Err(e) => Err(flat(e)),
        },
        _ => {
            let stdin = std::io::stdin().lock();
            match send_lines(&q, BufReader::with_capacity(1 << 16, stdin), args.timeout) {
                Ok(_) => Ok(0),
                Err(SendStop::Queue {
                    error: QueueError::TimedOut,
                    ..
                }) => Ok(full(args.timeout.unwrap_or_default())),
                Err(SendStop::Queue { line, error }) => Err(anyhow!("line {line}: {error}")),
                Err(SendStop::Read(e)) => Err(anyhow!("reading stdin: {e}")),
            }
        }
    }
}

// ---- recv ----------------------------------------------------------------------------------

/// How `recv_into` ended.
#[derive(Debug, PartialEq, Eq)]
enum RecvEnd {
    /// Every message asked for (or, with count 0, until the timeout) arrived.
    Done(u64),
    /// The timeout passed before the count was reached; how many came.
    TimedOut(u64),
    /// The reader of our output went away; how many were written.
    Closed(u64),
}

/// Receives up to `count` messages (0: no limit) into `out`, each followed by a newline. Output
/// is flushed whenever the queue runs empty, so a slow stream shows at once and a fast one goes
/// out in large writes.
fn recv_into(
    q: &Queue,
    out: &mut impl Write,
    count: u64,
    timeout: Option<Duration>,
) -> anyhow::Result<RecvEnd> {
    let mut buf = Vec::with_capacity(q.max_message().min(1 << 16));
    let mut got = 0u64;
    let closed = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    while count == 0 || got < count {
        if !q.try_recv(&mut buf).map_err(flat)? {
            match out.flush() {
                Err(e) if closed(&e) => return Ok(RecvEnd::Closed(got)),
                other => other.context("writing stdout")?,
            }
            let arrived = match timeout {
                Some(t) => q.recv_timeout(&mut buf, t).map_err(flat)?,
                None => q.recv(&mut buf).map(|()| true).map_err(flat)?,
            };
            if !arrived {
                return Ok(if count == 0 {
                    RecvEnd::Done(got)
                } else {
                    RecvEnd::TimedOut(got)
                });
            }
        }
        got += 1;
        match out.write_all(&buf).and_then(|()| out.write_all(b"\n")) {
            Err(e) if closed(&e) => return Ok(RecvEnd::Closed(got)),
            other => other.context("writing stdout")?,
        }
    }
    match out.flush() {
        Err(e) if closed(&e) => Ok(RecvEnd::Closed(got)),
        other => other.context("writing stdout").map(|()| RecvEnd::Done(got)),
    }
}

fn recv(args: RecvArgs) -> anyhow::Result<i32> {
    let q = Queue::from_env(&args.channel).map_err(flat)?;
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout);
    let end = recv_into(&q, &mut out, args.count, args.timeout);
    // What was received is written out even when the queue failed half-way.
    let _ = out.flush();
    match end? {
        RecvEnd::Done(_) | RecvEnd::Closed(_) => Ok(0),
        RecvEnd::TimedOut(got) => Ok(timed_out(&format!(
            "ipc recv {}: no message for {:?} ({got} of {} received)",
            args.channel,
            args.timeout.unwrap_or_default(),
            args.count
        ))),
    }
}

// ---- request/reply -------------------------------------------------------------------------

/// `bytes` without one trailing newline.
fn chomp(bytes: &mut Vec<u8>) {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
}

fn request(args: RequestArgs) -> anyhow::Result<i32> {
    let client = Client::from_env(&args.channel).map_err(flat)?;
    let body = if args.message.as_bytes() == b"-" {
        let mut all = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut all)
            .context("reading stdin")?;
        chomp(&mut all);
        all
    } else {
        args.message.as_bytes().to_vec()
    };
    let mut reply = Vec::new();
    match client.call(&body, &mut reply, args.timeout) {
        Ok(()) => {}
        Err(RpcError::Queue(QueueError::TimedOut)) => {
            return Ok(timed_out(&format!(
                "ipc request {}: no reply within {:?}",
                args.channel,
                args.timeout.unwrap_or_default()
            )))
        }
        Err(e) => return Err(flat(e)),
    }
    reply.push(b'\n');
    let mut out = std::io::stdout().lock();
    match out.write_all(&reply).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing stdout"),
        _ => Ok(0),
    }
}

/// Runs the handler with `request` and a newline on its stdin; its stdout, without one trailing
/// newline, is the reply. Its stderr is ours.
fn handle(command: &[OsString], request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| anyhow!("ipc serve needs a command after --"))?;
    let shown = program.to_string_lossy();
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("running {shown}"))?;
    // Written by a thread: a handler may print a lot before (or without) reading its input.
    let writer = child.stdin.take().map(|mut stdin| {
        let mut input = Vec::with_capacity(request.len() + 1);
        input.extend_from_slice(request);
        input.push(b'\n');
        std::thread::spawn(move || {
            // A handler that does not read its input is fine (EPIPE).
            let _ = stdin.write_all(&input);
        })
    });
    let mut reply = Vec::new();
    let read = match child.stdout.take() {
        Some(mut stdout) => stdout.read_to_end(&mut reply).map(drop),
        None => Ok(()),
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {shown}"))?;
    read.with_context(|| format!("reading the output of {shown}"))?;
    if !status.success() {
        eprintln!("hydra: ipc serve: {shown} failed ({status}); its output is the reply");
    }
    chomp(&mut reply);
    Ok(reply)
}

fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    let server = Server::from_env(&args.channel).map_err(flat)?;
    let mut req = Vec::new();
    let mut served = 0u64;
    while args.count == 0 || served < args.count {
        let caller = match server.next(&mut req, args.timeout) {
            Ok(Some(caller)) => caller,
            Ok(None) if args.count == 0 => return Ok(0),
            Ok(None) => {
                return Ok(timed_out(&format!(
                    "ipc serve {}: no request for {:?} ({served} of {} answered)",
                    args.channel,
                    args.timeout.unwrap_or_default(),
                    args.count
                )))
            }
            // A client can send anything: one bad request does not stop the server.
            Err(e @ (RpcError::Malformed | RpcError::UnknownClient(_))) => {
                eprintln!("hydra: ipc serve {}: request ignored: {e}", args.channel);
                continue;
            }
            Err(e) => return Err(flat(e)),
        };
        let reply = handle(&args.command, &req)?;
        match server.reply(caller, &reply) {
            Ok(()) => {}
            Err(e @ RpcError::ReplyDropped(_)) => {
                eprintln!("hydra: ipc serve {}: {e}", args.channel);
            }
            Err(e) => return Err(flat(e)),
        }
        served += 1;
    }
    Ok(0)
}

// ---- stats ---------------------------------------------------------------------------------

/// One queue's counters, as `hydra ipc stats --json` and `hydra stats --json` show them.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelRow {
    pub name: String,
    pub kind: ObjectKind,
    #[serde(flatten)]
    pub stats: Stats,
}

/// The counters of every queue (channels and reply queues) of the running container whose state
/// directory is `dir`; empty when it declares none.
pub fn container_channels(dir: &Path) -> anyhow::Result<Vec<ChannelRow>> {
    if manager::load(dir).is_none() {
        return Ok(Vec::new());
    }
    Ok(manager::channel_stats(dir)
        .map_err(flat)?
        .into_iter()
        .map(|q| ChannelRow {
            name: q.name,
            kind: q.kind,
            stats: q.stats,
        })
        .collect())
}

/// The table of `rows`, each line led by `lead` (the container, in `hydra stats`) if given.
pub fn table(rows: &[(Option<&str>, &ChannelRow)]) -> String {
    let with_lead = rows.iter().any(|(lead, _)| lead.is_some());
    let lead = |l: Option<&str>| {
        if with_lead {
            format!("{:<20} ", l.unwrap_or(""))
        } else {
            String::new()
        }
    };
    let mut out = format!(
        "{}{:<20} {:<8} {:>8} {:>8} {:>24} {:>24} {:>8}\n",
        lead(Some("CONTAINER")),
        "CHANNEL",
        "KIND",
        "CAPACITY",
        "DEPTH",
        "SENT (MSGS/BYTES)",
        "RECEIVED (MSGS/BYTES)",
        "FULL"
    );
    for (l, r) in rows {
        let s = &r.stats;
        out.push_str(&format!(
            "{}{:<20} {:<8} {:>8} {:>8} {:>24} {:>24} {:>8}\n",
            lead(*l),
            r.name,
            match r.kind {
                ObjectKind::Channel => "channel",
                ObjectKind::Reply => "reply",
                ObjectKind::SharedMemory => "memory",
            },
            s.capacity,
            s.depth,
            format!("{} / {}", s.sent_messages, format_size(s.sent_bytes)),
            format!(
                "{} / {}",
                s.received_messages,
                format_size(s.received_bytes)
            ),
            s.full_events,
        ));
    }
    out
}

/// The queue announced in environment variable `var`, if this process has it.
fn env_queue_stats(var: &str) -> Option<Result<Stats, QueueError>> {
    let fd = queue::env_fd(var)?;
    // SAFETY: env_fd checked that the fd is open; it is only borrowed for the call.
    Some(queue::read_stats(unsafe { BorrowedFd::borrow_raw(fd) }))
}

/// Inside a process: channel `name` and the reply queues this process holds for it.
fn own_channel(name: &str) -> Option<anyhow::Result<Vec<ChannelRow>>> {
    let var = crate::ipc::env_name(name);
    let main = env_queue_stats(&var)?;
    let collect = || -> anyhow::Result<Vec<ChannelRow>> {
        let not_a_queue = |e: QueueError| anyhow!("{name}: {e}");
        let mut rows = vec![ChannelRow {
            name: name.to_string(),
            kind: ObjectKind::Channel,
            stats: main.map_err(not_a_queue)?,
        }];
        let number = |suffix: &str| -> Option<u32> {
            std::env::var(format!("{var}{suffix}"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
        };
        // A client: its own reply queue.
        if let (Some(k), Some(stats)) =
            (number("_CLIENT"), env_queue_stats(&format!("{var}_REPLY")))
        {
            rows.push(ChannelRow {
                name: format!("{name}.reply.{k}"),
                kind: ObjectKind::Reply,
                stats: stats.map_err(not_a_queue)?,
            });
        }
        // A server: every client's.
        for k in 0..number("_CLIENTS").unwrap_or(0) {
            if let Some(stats) = env_queue_stats(&format!("{var}_REPLY_{k}")) {
                rows.push(ChannelRow {
                    name: format!("{name}.reply.{k}"),
                    kind: ObjectKind::Reply,
                    stats: stats.map_err(not_a_queue)?,
                });
            }
        }
        Ok(rows)
    };
    Some(collect())
}

fn stats(args: IpcStatsArgs) -> anyhow::Result<i32> {
    let rows = match own_channel(&args.name) {
        Some(rows) => rows?,
        None => {
            let dir = state::base_dir().join(&args.name);
            let container = crate::config::spec::check_name(&args.name).is_ok()
                && dir.is_dir()
                && state::owner_alive(&dir);
            if container {
                container_channels(&dir)?
            } else if std::env::vars_os().any(|(k, _)| k.as_bytes().starts_with(b"HYDRA_IPC_")) {
                // Inside a process with channels: the name is a channel it was not given.
                return Err(flat(QueueError::NoChannel(args.name)));
            } else {
                return Err(anyhow!(
                    "no running container named {0} (and no channel {0} in this process's environment)",
                    args.name
                ));
            }
        }
    };
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&rows)?)
    } else if rows.is_empty() {
        format!("{} has no channels\n", args.name)
    } else {
        let rows: Vec<(Option<&str>, &ChannelRow)> = rows.iter().map(|r| (None, r)).collect();
        table(&rows)
    };
    print_out(&text)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};

    fn queue(capacity: u32, max: usize) -> (OwnedFd, Queue) {
        let fd = Queue::create("cli", capacity, max).expect("memfd");
        let q = Queue::open(fd.as_fd()).expect("open");
        (fd, q)
    }

    #[test]
    fn each_line_is_one_message_without_its_newline() {
        let (_fd, q) = queue(16, 64);
        let sent = send_lines(&q, &b"one\ntwo\n\nlast"[..], None).expect("send");
        assert_eq!(sent, 4);
        let mut out = Vec::new();
        let end = recv_into(&q, &mut out, 4, Some(Duration::from_millis(10))).expect("recv");
        assert_eq!(end, RecvEnd::Done(4));
        assert_eq!(out, b"one\ntwo\n\nlast\n");
    }

    #[test]
    fn binary_messages_pass_unchanged() {
        let (_fd, q) = queue(4, 64);
        q.send(&[0, 255, b'\r', 7]).expect("send");
        let mut out = Vec::new();
        recv_into(&q, &mut out, 1, None).expect("recv");
        assert_eq!(out, [0, 255, b'\r', 7, b'\n']);
    }

    #[test]
    fn a_too_long_line_names_its_line_and_both_sizes() {
        let (_fd, q) = queue(4, 4);
        let err = send_lines(&q, &b"ok\ntoo long\n"[..], None).expect_err("too long");
        let SendStop::Queue { line, error } = err else {
            panic!("{err:?}")
        };
        assert_eq!(line, 2);
        let text = error.to_string();
        assert!(text.contains('8') && text.contains('4'), "{text}");
    }

    #[test]
    fn a_full_queue_times_out() {
        let (_fd, q) = queue(1, 8);
        let err =
            send_lines(&q, &b"a\nb\n"[..], Some(Duration::from_millis(20))).expect_err("full");
        assert!(
            matches!(
                err,
                SendStop::Queue {
                    line: 2,
                    error: QueueError::TimedOut
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn recv_counts_and_timeouts() {
        let (_fd, q) = queue(8, 8);
        q.send(b"x").expect("send");
        let mut out = Vec::new();
        let short = Some(Duration::from_millis(20));
        assert_eq!(
            recv_into(&q, &mut out, 3, short).expect("recv"),
            RecvEnd::TimedOut(1)
        );
        q.send(b"y").expect("send");
        // Count 0: everything until the timeout, which is then the normal end.
        assert_eq!(
            recv_into(&q, &mut out, 0, short).expect("recv"),
            RecvEnd::Done(1)
        );
        assert_eq!(out, b"x\ny\n");
    }

    #[test]
    fn the_table_has_a_line_per_queue() {
        let row = ChannelRow {
            name: "jobs".into(),
            kind: ObjectKind::Channel,
            stats: Stats {
                capacity: 64,
                sent_messages: 3,
                ..Stats::default()
            },
        };
        let text = table(&[(Some("c"), &row)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("CONTAINER"), "{text}");
        assert!(
            lines[1].starts_with("c ") && lines[1].contains("jobs"),
            "{text}"
        );
        let json = serde_json::to_value(&row).expect("json");
        assert_eq!(json["kind"], "channel");
        assert_eq!(json["sent_messages"], 3);
    }
}

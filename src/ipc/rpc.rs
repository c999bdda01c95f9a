//! Request/reply over queues. A channel declared with `reply: true` has one request queue
//! (every sender instance → every receiver) and one reply queue per sender instance (its
//! receivers → it). The environment says which is which (see `env_name`):
//! a client has `HYDRA_IPC_<NAME>` (requests), `HYDRA_IPC_<NAME>_REPLY` (its replies) and
//! `HYDRA_IPC_<NAME>_CLIENT` (its index k); a server has `HYDRA_IPC_<NAME>`,
//! `HYDRA_IPC_<NAME>_CLIENTS` (n) and `HYDRA_IPC_<NAME>_REPLY_<k>` for each k.
//!
//! A request is `[client k: u32 LE][sequence: u32 LE][payload]`, a reply `[sequence][payload]`:
//! a client drops replies to calls it gave up on. Nothing authenticates k: a client can ask for
//! its answer to go to another client (which then drops it, as its sequence does not match).

use std::time::{Duration, Instant};

use thiserror::Error;

use super::queue::{Queue, QueueError};

#[derive(Debug, Error)]
pub enum RpcError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{var} is missing or not a number: channel {channel} is not a request/reply channel of this process")]
    Env { channel: String, var: String },
    #[error("request of {len} bytes is larger than the channel allows ({max})")]
    TooLarge { len: usize, max: usize },
    #[error("a request too short to carry its header")]
    Malformed,
    #[error("a request from client {0}, which this channel does not have")]
    UnknownClient(u32),
    #[error("the reply queue of client {0} is full; its reply was dropped")]
    ReplyDropped(u32),
}

const HEAD: usize = 8;

fn env_number(channel: &str, suffix: &str) -> Result<u32, RpcError> {
    let var = format!("{}{suffix}", super::env_name(channel));
    std::env::var(&var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or(RpcError::Env {
            channel: channel.to_string(),
            var,
        })
}

fn open_suffix(channel: &str, suffix: &str) -> Result<Queue, RpcError> {
    let var = format!("{}{suffix}", super::env_name(channel));
    let fd = super::queue::env_fd(&var).ok_or(RpcError::Env {
        channel: channel.to_string(),
        var,
    })?;
    // SAFETY: the fd number was announced for this channel; it is only borrowed.
    Ok(Queue::open(unsafe {
        std::os::fd::BorrowedFd::borrow_raw(fd)
    })?)
}

/// The calling side.
pub struct Client {
    requests: Queue,
    replies: Queue,
    id: u32,
    sequence: std::sync::atomic::AtomicU32,
}

impl Client {
    pub fn from_env(channel: &str) -> Result<Client, RpcError> {
        Ok(Client::new(
            Queue::from_env(channel)?,
            open_suffix(channel, "_REPLY")?,
            env_number(channel, "_CLIENT")?,
        ))
    }

    pub fn new(requests: Queue, replies: Queue, id: u32) -> Client {
        Client {
            requests,
            replies,
            id,
            sequence: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Sends `request` and waits (up to `timeout`, forever when `None`) for its reply, which
    /// replaces the contents of `reply`.
    pub fn call(
        &self,
        request: &[u8],
        reply: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<(), RpcError> {
        let max = self.requests.max_message().saturating_sub(HEAD);
        if request.len() > max {
            return Err(RpcError::TooLarge {
                len: request.len(),
                max,
            });
        }
        let seq = self
            .sequence
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut framed = Vec::with_capacity(HEAD + request.len());
        framed.extend_from_slice(&self.id.to_le_bytes());
        framed.extend_from_slice(&seq.to_le_bytes());
        framed.extend_from_slice(request);
        let deadline = timeout.map(|t| Instant::now() + t);
        let left = |d: Option<Instant>| d.map(|d| d.saturating_duration_since(Instant::now()));
        match left(deadline) {
            Some(t) => self.requests.send_timeout(&framed, t)?,
            None => self.requests.send(&framed)?,
        }
        loop {
            match left(deadline) {
                Some(t) => {
                    if !self.replies.recv_timeout(reply, t)? {
                        return Err(QueueError::TimedOut.into());
                    }
                }
                None => self.replies.recv(reply)?,
            }
            if reply.len() >= 4 && reply[..4] == seq.to_le_bytes() {
                reply.drain(..4);
                return Ok(());
            }
            // A late answer to an earlier call: dropped.
        }
    }
}

/// The answering side.
pub struct Server {
    requests: Queue,
    replies: Vec<Queue>,
}

/// A request taken by `Server::next`: answer it with `Server::reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub client: u32,
    sequence: u32,
}

impl Server {
    pub fn from_env(channel: &str) -> Result<Server, RpcError> {
        let n = env_number(channel, "_CLIENTS")?;
        let replies = (0..n)
            .map(|k| open_suffix(channel, &format!("_REPLY_{k}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Server::new(Queue::from_env(channel)?, replies))
    }

    pub fn new(requests: Queue, replies: Vec<Queue>) -> Server {
        Server { requests, replies }
    }

    /// Waits (up to `timeout`, forever when `None`) for the next request, whose payload
    /// replaces the contents of `request`; `Ok(None)` when none came in time.
    pub fn next(
        &self,
        request: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Option<Caller>, RpcError> {
        match timeout {
            Some(t) => {
                if !self.requests.recv_timeout(request, t)? {
                    return Ok(None);
                }
            }
            None => self.requests.recv(request)?,
        }
        if request.len() < HEAD {
            return Err(RpcError::Malformed);
        }
        let word = |i: usize| {
            u32::from_le_bytes([request[i], request[i + 1], request[i + 2], request[i + 3]])
        };
        let caller = Caller {
            client: word(0),
            sequence: word(4),
        };
        request.drain(..HEAD);
        if caller.client as usize >= self.replies.len() {
            return Err(RpcError::UnknownClient(caller.client));
        }
        Ok(Some(caller))
    }

    /// Answers `caller`. A client that does not read its replies cannot stall the server: when
    /// its reply queue is full the reply is dropped (and said so).
    pub fn reply(&self, caller: Caller, reply: &[u8]) -> Result<(), RpcError> {
        let queue = self
            .replies
            .get(caller.client as usize)
            .ok_or(RpcError::UnknownClient(caller.client))?;
        let max = queue.max_message().saturating_sub(4);
        let body = &reply[..reply.len().min(max)];
        let mut framed = Vec::with_capacity(4 + body.len());
        framed.extend_from_slice(&caller.sequence.to_le_bytes());
        framed.extend_from_slice(body);
        match queue.try_send(&framed) {
            Err(QueueError::Full) => Err(RpcError::ReplyDropped(caller.client)),
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn queue(capacity: u32) -> (std::os::fd::OwnedFd, Queue) {
        let fd = Queue::create("rpc", capacity, 256).unwrap();
        let q = Queue::open(fd.as_fd()).unwrap();
        (fd, q)
    }

    #[test]
    fn each_client_gets_its_own_answer() {
        let (req_fd, server_requests) = queue(8);
        let (rep0_fd, rep0) = queue(8);
        let (rep1_fd, rep1) = queue(8);
        let open = |fd: &std::os::fd::OwnedFd| Queue::open(fd.as_fd()).unwrap();
        let server = Server::new(server_requests, vec![open(&rep0_fd), open(&rep1_fd)]);
        let c0 = Client::new(open(&req_fd), rep0, 0);
        let c1 = Client::new(open(&req_fd), rep1, 1);
        let serving = std::thread::spawn(move || {
            let mut req = Vec::new();
            for _ in 0..20 {
                let caller = server.next(&mut req, None).unwrap().unwrap();
                let mut answer = b"re:".to_vec();
                answer.extend_from_slice(&req);
                server.reply(caller, &answer).unwrap();
            }
        });
        let clients: Vec<_> = [(c0, "zero"), (c1, "one")]
            .into_iter()
            .map(|(c, name)| {
                std::thread::spawn(move || {
                    let mut reply = Vec::new();
                    for i in 0..10 {
                        let ask = format!("{name} {i}");
                        c.call(ask.as_bytes(), &mut reply, Some(Duration::from_secs(5)))
                            .unwrap();
                        assert_eq!(reply, format!("re:{ask}").as_bytes());
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        serving.join().unwrap();
    }

    #[test]
    fn a_late_reply_is_dropped_and_a_full_reply_queue_does_not_stall_the_server() {
        let (req_fd, server_requests) = queue(8);
        let (rep_fd, replies) = queue(1);
        let server = Server::new(server_requests, vec![Queue::open(rep_fd.as_fd()).unwrap()]);
        let client = Client::new(Queue::open(req_fd.as_fd()).unwrap(), replies, 0);
        let mut reply = Vec::new();
        // No server yet: the call times out, its request stays queued.
        assert!(matches!(
            client.call(b"first", &mut reply, Some(Duration::from_millis(20))),
            Err(RpcError::Queue(QueueError::TimedOut))
        ));
        let mut req = Vec::new();
        let first = server.next(&mut req, None).unwrap().unwrap();
        server.reply(first, b"late").unwrap();
        // The reply queue (capacity 1) is full now: the next reply is dropped, not waited for.
        assert!(matches!(
            server.reply(first, b"again"),
            Err(RpcError::ReplyDropped(0))
        ));
        let serving = std::thread::spawn(move || {
            let mut req = Vec::new();
            let caller = server.next(&mut req, None).unwrap().unwrap();
            server.reply(caller, b"second's answer").unwrap();
        });
        client
            .call(b"second", &mut reply, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(reply, b"second's answer");
        serving.join().unwrap();
    }

    #[test]
    fn a_forged_client_index_is_refused() {
        let (req_fd, server_requests) = queue(8);
        let server = Server::new(server_requests, Vec::new());
        let raw = Queue::open(req_fd.as_fd()).unwrap();
        raw.send(&[7, 0, 0, 0, 0, 0, 0, 0, b'x']).unwrap();
        raw.send(&[1, 2]).unwrap();
        let mut req = Vec::new();
        assert!(matches!(
            server.next(&mut req, None),
            Err(RpcError::UnknownClient(7))
        ));
        assert!(matches!(
            server.next(&mut req, None),
            Err(RpcError::Malformed)
        ));
    }
}

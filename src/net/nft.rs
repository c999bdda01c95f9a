//! Talking to the kernel's nftables: JSON batches through the `nft` binary (one transaction
//! each), the table read back as JSON, and one direct netlink question (does hydra's table
//! exist?) that would cost a whole `nft` run otherwise. Every change holds the network lock
//! (taken by the caller), so removing the last container's objects and then the table never
//! races another container adding its own.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::firewall::{self, FirewallError, Network, TABLE};
use super::lock::NetLock;
use super::nft_table;

fn refused(what: &'static str) -> impl Fn(std::io::Error) -> FirewallError {
    move |e| match e.kind() {
        std::io::ErrorKind::NotFound => FirewallError::NoNft,
        _ => FirewallError::Refused {
            what,
            message: e.to_string(),
        },
    }
}

/// The nft program: found on PATH once, so each run is one exec rather than one per PATH entry.
fn nft_program() -> std::path::PathBuf {
    static FOUND: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            use std::os::unix::fs::PermissionsExt;
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|dir| dir.join("nft"))
                .find(|p| {
                    p.metadata()
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                })
                // Not found: running "nft" gives the NotFound error that names the package.
                .unwrap_or_else(|| "nft".into())
        })
        .clone()
}

/// The first non-empty line nft printed on stderr.
fn first_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("nft failed without a message")
        .to_string()
}

/// An `nft -j -f -` run under way: its batch written, its verdict not read yet.
pub struct Running {
    child: std::process::Child,
    what: &'static str,
}

impl Running {
    /// Waits for nft; its first stderr line becomes the error.
    pub fn wait(self) -> Result<(), FirewallError> {
        let what = self.what;
        let output = self.child.wait_with_output().map_err(refused(what))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(FirewallError::Refused {
                what,
                message: first_line(&output.stderr),
            })
        }
    }
}

/// Starts `nft -j -f -` with the batch on stdin.
fn start(batch: &Value, what: &'static str) -> Result<Running, FirewallError> {
    let mut child = Command::new(nft_program())
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(refused(what))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error shows as nft's own failure when it is waited for. Dropping stdin here
        // closes the pipe, so nft sees the whole batch.
        let _ = stdin.write_all(batch.to_string().as_bytes());
    }
    Ok(Running { child, what })
}

/// Runs `nft -j -f -` with the batch on stdin.
fn apply(batch: &Value, what: &'static str) -> Result<(), FirewallError> {
    start(batch, what)?.wait()
}

/// hydra's table as JSON, or `None` when it does not exist.
pub fn list() -> Result<Option<Value>, FirewallError> {
    let output = Command::new(nft_program())
        .args(["-j", "list", "table", "inet", TABLE])
        .stdin(Stdio::null())
        .output()
        .map_err(refused("listing"))?;
    if !output.status.success() {
        let message = first_line(&output.stderr);
        if message.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(FirewallError::List(message));
    }
    serde_json::from_slice(&output.stdout)
        .map(Some)
        .map_err(|e| FirewallError::List(e.to_string()))
}

/// Whether hydra's table exists: one NFT_MSG_GETTABLE request over netlink.
fn table_exists() -> Result<bool, FirewallError> {
    use super::nfnetlink::{ask, attr, message};
    const NFT_MSG_GETTABLE: u16 = (10 << 8) | 1; // NFNL_SUBSYS_NFTABLES << 8
    const NFT_MSG_NEWTABLE: u16 = 10 << 8;
    const NFTA_TABLE_NAME: u16 = 1;
    let name = attr(NFTA_TABLE_NAME, &[TABLE.as_bytes(), b"\0"].concat());
    let request = message(
        NFT_MSG_GETTABLE,
        libc::NLM_F_ACK as u16,
        libc::NFPROTO_INET as u8,
        &name,
    );
    ask(&request, NFT_MSG_NEWTABLE, libc::ENOENT)
        .map_err(|e| FirewallError::List(format!("asking for hydra's table: {e}")))
}

/// Starts installing a container's chains, rules and map elements in one transaction (with the
/// shared table and base chains, if this is the first container). The caller keeps the lock
/// until it has waited for the result.
pub fn start_install(net: &Network, _lock: &NetLock) -> Result<Running, FirewallError> {
    let exists = table_exists()?;
    start(&nft_table::install_batch(net, exists), "port mapping")
}

/// Removes a container's objects in one transaction: the whole table when `last` (no other
/// container has a network), else what `install` added, or, when that fails (a crash part-way),
/// whatever the table still holds of it.
pub fn remove(net: &Network, last: bool, _lock: &NetLock) -> Result<(), FirewallError> {
    if !table_exists()? {
        return Ok(());
    }
    if last {
        return apply(&nft_table::remove_table_batch(), "cleanup");
    }
    let (elements, chains) = nft_table::installed(net);
    let batch = nft_table::remove_batch(&net.container, &elements, &chains);
    if apply(&batch, "cleanup").is_ok() {
        return Ok(());
    }
    let Some(listing) = list()? else {
        return Ok(());
    };
    let (elements, chains) = nft_table::found_in(&listing, &net.container);
    if elements.is_empty() && chains.is_empty() {
        return Ok(());
    }
    apply(
        &nft_table::remove_batch(&net.container, &elements, &chains),
        "cleanup",
    )
}

/// A counter read back: the rule's comment, packets, bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    pub comment: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Every commented counter in `container`'s chains.
pub fn counters(container: &str) -> Result<Vec<Count>, FirewallError> {
    let Some(listing) = list()? else {
        return Ok(Vec::new());
    };
    let objects = listing["nftables"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for o in &objects {
        let rule = &o["rule"];
        let in_container = rule["chain"]
            .as_str()
            .is_some_and(|c| firewall::is_chain_of(container, c));
        let (true, Some(comment), Some(expr)) = (
            in_container,
            rule["comment"].as_str(),
            rule["expr"].as_array(),
        ) else {
            continue;
        };
        for statement in expr {
            let c = &statement["counter"];
            if c.is_object() {
                out.push(Count {
                    comment: comment.to_string(),
                    packets: c["packets"].as_u64().unwrap_or(0),
                    bytes: c["bytes"].as_u64().unwrap_or(0),
                });
            }
        }
    }
    Ok(out)
}

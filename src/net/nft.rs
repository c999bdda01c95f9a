//! Talking to the kernel's nftables through the `nft` binary (JSON batches via the `nftables`
//! crate): installing and removing a container's chains, reading its counters. Every change
//! holds the network lock (taken by the caller), so removing the last container's chains and then the emptied table
//! never races another container adding its own.

use nftables::helper::{self, NftablesError};
use nftables::schema::{NfListObject, NfObject, Nftables};
use nftables::stmt::{Counter, Statement};

use super::firewall::{self, FirewallError, Network, TABLE};
use super::lock::NetLock;

fn error(what: &'static str) -> impl Fn(NftablesError) -> FirewallError {
    move |e| match e {
        NftablesError::NftExecution { inner, .. }
            if inner.kind() == std::io::ErrorKind::NotFound =>
        {
            FirewallError::NoNft
        }
        NftablesError::NftFailed { stderr, .. } => FirewallError::Refused {
            what,
            message: stderr.lines().next().unwrap_or_default().to_string(),
        },
        other => FirewallError::Refused {
            what,
            message: other.to_string(),
        },
    }
}

fn apply(batch: &Nftables, what: &'static str) -> Result<(), FirewallError> {
    helper::apply_ruleset(batch).map_err(error(what))
}

/// hydra's table as the kernel has it now, or `None` when it does not exist.
pub fn list() -> Result<Option<Nftables<'static>>, FirewallError> {
    match helper::get_current_ruleset_with_args(
        helper::DEFAULT_NFT,
        ["list", "table", "inet", TABLE],
    ) {
        Ok(ruleset) => Ok(Some(ruleset)),
        Err(NftablesError::NftFailed { stderr, .. })
            if stderr.contains("No such file or directory") =>
        {
            Ok(None)
        }
        Err(e) => Err(FirewallError::List(error("listing")(e).to_string())),
    }
}

fn chains(ruleset: &Nftables) -> Vec<String> {
    ruleset
        .objects
        .iter()
        .filter_map(|o| match o {
            NfObject::ListObject(NfListObject::Chain(c)) => Some(c.name.to_string()),
            _ => None,
        })
        .collect()
}

/// The chains of `container` present in hydra's table.
pub fn container_chains(container: &str) -> Result<Vec<String>, FirewallError> {
    Ok(list()?
        .map(|r| chains(&r))
        .unwrap_or_default()
        .into_iter()
        .filter(|c| firewall::is_chain_of(container, c))
        .collect())
}

/// Installs a container's chains in one transaction.
pub fn install(net: &Network, _lock: &NetLock) -> Result<(), FirewallError> {
    apply(&firewall::install_batch(net), "port mapping")
}

/// Removes a container's chains in one transaction, then hydra's table once it is empty.
pub fn remove(container: &str, _lock: &NetLock) -> Result<(), FirewallError> {
    let present = container_chains(container)?;
    if !present.is_empty() {
        apply(&firewall::remove_batch(container, &present), "cleanup")?;
    }
    if let Some(ruleset) = list()? {
        if chains(&ruleset).is_empty() {
            let mut batch = nftables::batch::Batch::new();
            batch.delete(NfListObject::Table(nftables::schema::Table {
                family: nftables::types::NfFamily::INet,
                name: TABLE.into(),
                ..Default::default()
            }));
            apply(&batch.to_nftables(), "cleanup")?;
        }
    }
    Ok(())
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
    let Some(ruleset) = list()? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for object in ruleset.objects.iter() {
        let NfObject::ListObject(NfListObject::Rule(rule)) = object else {
            continue;
        };
        if !firewall::is_chain_of(container, &rule.chain) {
            continue;
        }
        let Some(comment) = &rule.comment else {
            continue;
        };
        for statement in rule.expr.iter() {
            if let Statement::Counter(Counter::Anonymous(Some(c))) = statement {
                out.push(Count {
                    comment: comment.to_string(),
                    packets: c.packets.unwrap_or(0) as u64,
                    bytes: c.bytes.unwrap_or(0) as u64,
                });
            }
        }
    }
    Ok(out)
}

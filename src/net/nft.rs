//! hydra's nftables work: installing and removing a container's objects in hydra's table (one
//! transaction each) and reading its counters, all over netlink from hydra itself (`nft_batch`),
//! with no `nft` process. Running `nft -j -f -` cost ~3 ms of a `partial` start-up pinned to
//! one CPU: ~0.9 ms for its exec and start, the rest parsing the JSON, fetching nft's cache of
//! the whole ruleset and committing; the kernel's own share is a fraction of a millisecond.
//! Every change holds the network lock (taken by the caller), so removing the last container's
//! objects and then the table never races another container adding its own.

use super::firewall::{self, FirewallError, Network, TABLE};
use super::lock::NetLock;
use super::nft_batch::{Refusal, Session};
use super::nft_table;
use super::nft_wire::Change;

fn session() -> Result<Session, FirewallError> {
    Session::open().map_err(FirewallError::Netlink)
}

fn exists(session: &mut Session) -> Result<bool, FirewallError> {
    session.table_exists(TABLE).map_err(FirewallError::Netlink)
}

fn refused(what: &'static str) -> impl Fn(Refusal) -> FirewallError {
    move |r| FirewallError::Refused {
        what,
        step: r.step,
        errno: r.errno,
    }
}

/// Installs a container's chains, rules and map elements in one transaction (with the shared
/// table and base chains, if this is the first container).
pub fn install(net: &Network, _lock: &NetLock) -> Result<(), FirewallError> {
    let mut s = session()?;
    let exists = exists(&mut s)?;
    s.apply(TABLE, &nft_table::install(net, exists))
        .map_err(refused("port mapping"))
}

/// Removes a container's objects in one transaction: the whole table when `last` (no other
/// container has a network), else what `install` added; when part of that is gone already (a
/// crash part-way, an install that never happened), whatever is left of it, piece by piece.
pub fn remove(net: &Network, last: bool, _lock: &NetLock) -> Result<(), FirewallError> {
    remove_with(&mut session()?, net, last)
}

fn remove_with(s: &mut Session, net: &Network, last: bool) -> Result<(), FirewallError> {
    if !exists(s)? {
        return Ok(());
    }
    if last {
        return s
            .apply(TABLE, &nft_table::remove_table())
            .map_err(refused("cleanup"));
    }
    let parts = nft_table::removal(net);
    let all: Vec<Change> = parts.concat();
    match s.apply(TABLE, &all) {
        Err(r) if r.errno == nix::errno::Errno::ENOENT => {}
        other => return other.map_err(refused("cleanup")),
    }
    for part in &parts {
        match s.apply(TABLE, part) {
            Err(r) if r.errno == nix::errno::Errno::ENOENT => {}
            other => other.map_err(refused("cleanup"))?,
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
    let counted = session()?
        .counters(TABLE, &firewall::chain_names(container))
        .map_err(FirewallError::Netlink)?;
    Ok(counted
        .into_iter()
        .filter_map(|c| {
            Some(Count {
                comment: c.comment?,
                packets: c.packets,
                bytes: c.bytes,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    //! Against the kernel, as root, in a network namespace of the test's own (made by a thread
    //! that unshares its network namespace; it goes with the thread). Skipped without root, except under CI=true, where that fails.

    use super::*;
    use crate::net::firewall::Forward;
    use crate::net::nft_table::tests::sample;
    use crate::net::nft_wire::{Data, Key, Verdict};
    use nix::errno::Errno;

    /// Runs `f` in a fresh network namespace (with `nft` runs from it seeing the same one).
    fn in_scratch_netns(f: impl FnOnce() + Send + 'static) {
        if !nix::unistd::geteuid().is_root() {
            // Under CI a test that needs root must fail, never pass without running.
            assert!(std::env::var_os("CI").is_none(), "needs root (CI=true)");
            eprintln!("skipped: needs root");
            return;
        }
        let t = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET)");
            f();
        });
        if let Err(panic) = t.join() {
            std::panic::resume_unwind(panic);
        }
    }

    /// `nft ARGS` in the calling thread's network namespace: its stdout.
    fn nft(args: &[&str]) -> String {
        let out = std::process::Command::new("nft")
            .args(args)
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn chains_of(container: &str) -> Vec<String> {
        nft(&["list", "table", "inet", TABLE])
            .lines()
            .filter_map(|l| l.trim().strip_prefix("chain "))
            .map(|l| l.trim_end_matches(" {").to_string())
            .filter(|c| firewall::is_chain_of(container, c))
            .collect()
    }

    #[test]
    fn a_transaction_goes_in_whole_or_not_at_all_and_removal_takes_what_is_left() {
        in_scratch_netns(|| {
            let mut s = Session::open().unwrap();
            assert!(!s.table_exists(TABLE).unwrap());
            let a = sample();
            s.apply(TABLE, &nft_table::install(&a, false)).unwrap();
            assert!(s.table_exists(TABLE).unwrap());
            assert_eq!(chains_of("my-app").len(), 4);
            let listing = nft(&["list", "chain", "inet", TABLE, "my-app-dnat"]);
            assert!(
                listing.contains("dnat ip to numgen inc mod 2 map { 0 : 10.231.0.2, 1 : 10.231.0.6 }:8080 comment \"m0 new\""),
                "{listing}"
            );
            let counted = s.counters(TABLE, &["my-app-dnat".to_string()]).unwrap();
            assert!(counted.iter().any(|c| c.chain == "my-app-dnat"
                && c.comment.as_deref() == Some("m1 new")
                && c.packets == 0));

            // Another container whose host port is already in the map: refused, named, and
            // nothing of it stays (its chains and rules came before the refused element).
            let mut b = sample();
            b.container = "other".into();
            for (e, n) in b.endpoints.iter_mut().zip([64u8, 68, 72]) {
                e.subnet.network = std::net::Ipv4Addr::new(10, 231, 0, n);
            }
            b.forwards.truncate(1);
            let r = s.apply(TABLE, &nft_table::install(&b, true)).unwrap_err();
            assert_eq!(
                r.step, "adding tcp . 18080 : jump other-dnat to map dnat_ports",
                "{r:?}"
            );
            assert!(matches!(r.errno, Errno::EBUSY | Errno::EEXIST), "{r:?}");
            assert!(
                chains_of("other").is_empty(),
                "a refused transaction left chains"
            );
            let err = FirewallError::Refused {
                what: "port mapping",
                step: r.step,
                errno: r.errno,
            };
            assert!(
                err.to_string()
                    .starts_with("the kernel refused the port mapping rules: adding tcp . 18080"),
                "{err}"
            );

            // A malformed element (an 8-byte key in a map of interface names): refused too.
            let bad = [
                Change::AddChain {
                    name: "other-pre".into(),
                    hook: None,
                },
                Change::AddElements {
                    map: "pre_if".into(),
                    set_id: None,
                    elements: vec![(
                        Key::ProtoPort(crate::config::Protocol::Tcp, 1),
                        Data::Verdict(Verdict::Jump("other-pre".into())),
                    )],
                },
            ];
            let r = s.apply(TABLE, &bad).unwrap_err();
            assert_eq!(r.step, "adding tcp . 1 : jump other-pre to map pre_if");
            assert_eq!(r.errno, Errno::EINVAL);
            assert!(chains_of("other").is_empty());

            // With another container's objects gone in part (a crash part-way), removal takes
            // what is left and leaves the rest of the table alone.
            b.forwards = vec![Forward {
                host_port: 18090,
                ..a.forwards[0].clone()
            }];
            s.apply(TABLE, &nft_table::install(&b, true)).unwrap();
            let first_parts: Vec<Change> = nft_table::removal(&b)
                .into_iter()
                .take(3)
                .flatten()
                .collect();
            s.apply(TABLE, &first_parts).unwrap();
            remove_with(&mut s, &b, false).unwrap();
            assert!(chains_of("other").is_empty());
            assert!(!nft(&["list", "table", "inet", TABLE]).contains("other-"));
            assert_eq!(
                chains_of("my-app").len(),
                4,
                "the other container's chains stay"
            );
            // Removing what is already gone is no error.
            remove_with(&mut s, &b, false).unwrap();

            remove_with(&mut s, &a, true).unwrap();
            assert!(!s.table_exists(TABLE).unwrap());
            assert_eq!(nft(&["list", "tables"]).trim(), "");
            // Nothing to remove without the table.
            remove_with(&mut s, &a, true).unwrap();
        });
    }

    #[test]
    fn counters_read_while_other_containers_come_and_go_miss_no_rule() {
        in_scratch_netns(|| {
            let mut s = Session::open().unwrap();
            // Enough other containers that a dump takes several datagrams: the kernel can only
            // find the ruleset changed between two of them.
            let like_a = |name: String, n: u8| {
                let mut b = sample();
                b.container = name;
                for (e, i) in b.endpoints.iter_mut().zip([0u8, 4, 8]) {
                    e.subnet.network = std::net::Ipv4Addr::new(10, 232, n, i);
                }
                for f in &mut b.forwards {
                    f.host_port += 100 * u16::from(n) + 100;
                }
                b
            };
            let fillers: Vec<Network> = (0..40).map(|n| like_a(format!("fill{n}"), n)).collect();
            for (i, f) in fillers.iter().enumerate() {
                s.apply(TABLE, &nft_table::install(f, i > 0)).unwrap();
            }
            let a = like_a("my-app".into(), 60);
            s.apply(TABLE, &nft_table::install(&a, true)).unwrap();
            let of_a = |s: &mut Session| {
                let chains = firewall::chain_names("my-app");
                s.counters(TABLE, &chains).unwrap().len()
            };
            let want = of_a(&mut s);
            assert!(want > 0);
            // Containers whose chains come before my-app's go and come back all the while (a
            // thread in the same namespace, a change every 10 ms): each going moves
            // my-app's rules in the kernel's list, which an unchecked dump would skip over.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let churn = {
                let stop = stop.clone();
                let fillers = fillers.clone();
                std::thread::spawn(move || {
                    let mut s = Session::open().unwrap();
                    for f in fillers.iter().cycle() {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        remove_with(&mut s, f, false).unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        s.apply(TABLE, &nft_table::install(f, true)).unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                })
            };
            for _ in 0..100 {
                assert_eq!(of_a(&mut s), want, "a dump missed or repeated rules");
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            churn.join().unwrap();
            for f in &fillers {
                remove_with(&mut s, f, false).unwrap();
            }
            remove_with(&mut s, &a, true).unwrap();
        });
    }
}

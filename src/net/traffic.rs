//! Network bytes of one virtual process: the counters of the interfaces in its own network
//! namespace (`/proc/PID/net/dev`), loopback excluded. A process on the host's network (`none`)
//! has no traffic of its own to show.

use std::os::unix::fs::MetadataExt;

/// (received, sent) bytes, or `None` for a process without a network namespace of its own.
pub fn of_pid(pid: i32) -> Option<(u64, u64)> {
    let own = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?.ino();
    let host = std::fs::metadata("/proc/self/ns/net").ok()?.ino();
    if own == host {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    Some(parse(&text))
}

/// Sums rx and tx bytes over the non-loopback interfaces of a `/proc/net/dev` table.
pub fn parse(text: &str) -> (u64, u64) {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim() != "lo")
        .filter_map(|(_, fields)| {
            let f: Vec<u64> = fields
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            Some((*f.first()?, *f.get(8)?))
        })
        .fold((0, 0), |(r, t), (a, b)| (r + a, t + b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_every_interface_but_lo() {
        let table = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     500       5    0    0    0     0          0         0      500       5    0    0    0     0       0          0\n  eth0:    1066      12    0    0    0     0          0         0      799      12    0    0    0     0       0          0\n";
        assert_eq!(super::parse(table), (1066, 799));
    }
}

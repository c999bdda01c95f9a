//! The host's own TCP connections to virtual processes, from the kernel's socket table
//! (`/proc/net/tcp`, the host namespace's): the socket redirect's connections are not tracked,
//! so `hydra ports` counts them here.

use std::net::Ipv4Addr;

const TABLE: &str = "/proc/net/tcp";
/// TCP_ESTABLISHED, as the table's `st` column shows it.
const ESTABLISHED: &str = "01";

/// Parses one row: `sl local_address rem_address st ...`, addresses as `AABBCCDD:PPPP` (the
/// address in memory order read as a host-order word, the port in host order).
pub fn parse_row(row: &str) -> Option<(Ipv4Addr, u16, bool)> {
    let mut fields = row.split_whitespace().skip(2);
    let (addr, port) = fields.next()?.split_once(':')?;
    let state = fields.next()?;
    let addr = u32::from_str_radix(addr, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some((
        Ipv4Addr::from(addr.to_ne_bytes()),
        port,
        state == ESTABLISHED,
    ))
}

/// The remote ends (address, port) of the host's established IPv4 TCP connections.
pub fn established() -> Vec<(Ipv4Addr, u16)> {
    let Ok(text) = std::fs::read_to_string(TABLE) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(parse_row)
        .filter(|&(_, _, established)| established)
        .map(|(addr, port, _)| (addr, port))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_remote_end_and_the_state() {
        let row = "   3: 0100007F:A3F2 0200E70A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 123 1 0000000000000000 20 4 30 10 -1";
        let (addr, port, established) = parse_row(row).unwrap();
        assert_eq!(addr, Ipv4Addr::new(10, 231, 0, 2));
        assert_eq!(port, 8080);
        assert!(established);
        let listening = row.replace(" 01 ", " 0A ");
        assert!(!parse_row(&listening).unwrap().2);
        assert!(parse_row("  sl  local_address rem_address   st").is_none());
    }
}

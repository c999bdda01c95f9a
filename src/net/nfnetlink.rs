//! The few netfilter netlink messages hydra sends itself (a ctnetlink delete, an nf_tables
//! table query): a netlink header, the nfgenmsg header and attributes. Shared by `conntrack` and
//! `nft` so the wire format is written once.

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

/// NLA_F_NESTED: the attribute holds attributes.
pub const NESTED: u16 = 0x8000;

/// One attribute: length, type, payload, padded to 4 bytes.
pub fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(4 + payload.len() + 3);
    a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize(a.len().next_multiple_of(4), 0);
    a
}

/// A whole request: nlmsghdr (`kind`, `flags` | NLM_F_REQUEST), nfgenmsg (`family`, version 0,
/// resource 0), then the attributes.
pub fn message(kind: u16, flags: u16, family: u8, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(libc::NLM_F_REQUEST as u16 | flags).to_ne_bytes());
    m.extend_from_slice(&[0u8; 8]); // sequence and port id: the kernel fills the port in
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

/// A NETLINK_NETFILTER socket connected to the kernel.
pub fn socket() -> std::io::Result<Socket> {
    let socket = Socket::new(NETLINK_NETFILTER)?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Sends `request` and returns the kernel's verdict from its first answer: `Ok(true)` for a
/// message of type `found`, `Ok(false)` for the error `absent`, `Ok(true)` for a plain ACK.
pub fn ask(request: &[u8], found: u16, absent: i32) -> std::io::Result<bool> {
    let socket = socket()?;
    socket.send(request, 0)?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if kind == found {
                return Ok(true);
            }
            if kind == libc::NLMSG_ERROR as u16 && at + 20 <= n {
                let code =
                    i32::from_ne_bytes([buf[at + 16], buf[at + 17], buf[at + 18], buf[at + 19]]);
                return match -code {
                    0 => Ok(true),
                    e if e == absent => Ok(false),
                    e => Err(std::io::Error::from_raw_os_error(e)),
                };
            }
            if len < 16 {
                break;
            }
            at += len.next_multiple_of(4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_messages_carry_their_length() {
        assert_eq!(
            attr(1, b"hydra\0"),
            [10, 0, 1, 0, b'h', b'y', b'd', b'r', b'a', 0, 0, 0]
        );
        let m = message(0x102, 0, libc::AF_INET as u8, &attr(3, &[1, 2]));
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 0x102);
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(m.len(), 16 + 4 + 8);
    }
}

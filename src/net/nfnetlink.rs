//! The netfilter netlink wire format hydra writes and reads itself (ctnetlink deletes, nf_tables
//! batches and dumps): a netlink header, the nfgenmsg header and attributes, and a reader for
//! what the kernel sends back. Shared by `conntrack` and the `nft_*` modules so the format is
//! written once.

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

/// NLA_F_NESTED: the attribute holds attributes.
pub const NESTED: u16 = 0x8000;
/// The attribute type without the NESTED and NET_BYTEORDER flags.
const TYPE_MASK: u16 = 0x3fff;
/// nlmsghdr (16 bytes) + nfgenmsg (4 bytes).
pub const HEADERS: usize = 20;

/// One attribute: length, type, payload, padded to 4 bytes.
pub fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(4 + payload.len() + 3);
    a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize(a.len().next_multiple_of(4), 0);
    a
}

/// A nested attribute holding `parts`, one after the other.
pub fn nest(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    attr(kind | NESTED, &parts.concat())
}

/// A NUL-terminated string attribute.
pub fn text(kind: u16, s: &str) -> Vec<u8> {
    attr(kind, &[s.as_bytes(), b"\0"].concat())
}

/// A 32-bit attribute in network byte order (nf_tables' integers).
pub fn be32(kind: u16, value: u32) -> Vec<u8> {
    attr(kind, &value.to_be_bytes())
}

/// The headers of one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Header {
    pub kind: u16,
    /// NLM_F_REQUEST is always added.
    pub flags: u16,
    pub seq: u32,
    pub family: u8,
    /// nfgenmsg's resource id (the subsystem of a batch), in network byte order on the wire.
    pub res_id: u16,
}

/// A whole request: nlmsghdr (the port id left for the kernel to fill in), nfgenmsg (version 0),
/// then the attributes.
pub fn request(h: Header, attrs: &[u8]) -> Vec<u8> {
    let len = HEADERS + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&h.kind.to_ne_bytes());
    m.extend_from_slice(&(libc::NLM_F_REQUEST as u16 | h.flags).to_ne_bytes());
    m.extend_from_slice(&h.seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.push(h.family);
    m.push(0); // NFNETLINK_V0
    m.extend_from_slice(&h.res_id.to_be_bytes());
    m.extend_from_slice(attrs);
    m
}

/// A request with sequence number and resource id 0.
pub fn message(kind: u16, flags: u16, family: u8, attrs: &[u8]) -> Vec<u8> {
    request(
        Header {
            kind,
            flags,
            family,
            ..Header::default()
        },
        attrs,
    )
}

/// A NETLINK_NETFILTER socket connected to the kernel.
pub fn socket() -> std::io::Result<Socket> {
    let socket = Socket::new(NETLINK_NETFILTER)?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// One message the kernel sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reply<'b> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// Everything after the nlmsghdr.
    pub payload: &'b [u8],
}

impl<'b> Reply<'b> {
    /// For an NLMSG_ERROR message: the error (0 for an ACK, else a positive errno) and the
    /// header of the request it answers (its sequence number).
    pub fn error(&self) -> Option<(i32, u32)> {
        if self.kind != libc::NLMSG_ERROR as u16 || self.payload.len() < 4 + 16 {
            return None;
        }
        let code = i32::from_ne_bytes(self.payload[0..4].try_into().ok()?);
        let seq = u32::from_ne_bytes(self.payload[12..16].try_into().ok()?);
        Some((-code, seq))
    }

    /// The attributes after the nfgenmsg header.
    pub fn attributes(&self) -> Attributes<'b> {
        Attributes(self.payload.get(4..).unwrap_or_default())
    }
}

/// The messages in one datagram from the kernel; a truncated one ends the walk.
pub fn replies(buf: &[u8]) -> impl Iterator<Item = Reply<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let header = rest.get(..16)?;
        let len = u32::from_ne_bytes(header[0..4].try_into().ok()?) as usize;
        if len < 16 || len > rest.len() {
            return None;
        }
        let reply = Reply {
            kind: u16::from_ne_bytes(header[4..6].try_into().ok()?),
            flags: u16::from_ne_bytes(header[6..8].try_into().ok()?),
            seq: u32::from_ne_bytes(header[8..12].try_into().ok()?),
            payload: &rest[16..len],
        };
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some(reply)
    })
}

/// Attributes, read one after the other: (type without flags, payload).
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'b>(pub &'b [u8]);

impl<'b> Iterator for Attributes<'b> {
    type Item = (u16, &'b [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.0.get(..4)?;
        let len = u16::from_ne_bytes([header[0], header[1]]) as usize;
        let kind = u16::from_ne_bytes([header[2], header[3]]) & TYPE_MASK;
        if len < 4 || len > self.0.len() {
            self.0 = &[];
            return None;
        }
        let payload = &self.0[4..len];
        self.0 = self.0.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, payload))
    }
}

impl<'b> Attributes<'b> {
    /// The payload of the first attribute of type `kind`.
    pub fn get(self, kind: u16) -> Option<&'b [u8]> {
        self.into_iter().find(|(k, _)| *k == kind).map(|(_, p)| p)
    }
}

/// A string attribute's text, without its NUL.
pub fn as_text(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// A 64-bit integer attribute in network byte order.
pub fn as_be64(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.try_into().ok()?))
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

    #[test]
    fn a_batch_header_carries_its_subsystem_in_network_byte_order() {
        let m = request(
            Header {
                kind: 0x10,
                res_id: 10,
                ..Header::default()
            },
            &[],
        );
        // As `nft --debug=mnl` prints a batch begin: extra header 00 00 00 0a.
        assert_eq!(m[16..20], [0, 0, 0, 0x0a]);
    }

    #[test]
    fn replies_and_attributes_are_read_back_and_a_truncated_one_ends_the_walk() {
        let body = [text(1, "hydra"), nest(2, &[be32(1, 7)])].concat();
        let mut buf = request(
            Header {
                kind: 0xa00,
                seq: 9,
                ..Header::default()
            },
            &body,
        );
        buf.extend_from_slice(&[40, 0, 0, 0, 2, 0]); // a second header cut short
        let all: Vec<_> = replies(&buf).collect();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].kind, all[0].seq), (0xa00, 9));
        let attrs: Vec<_> = all[0].attributes().collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(as_text(attrs[0].1), "hydra");
        assert_eq!(attrs[1].0, 2, "the NESTED flag is masked off");
        assert_eq!(Attributes(attrs[1].1).get(1), Some(&7u32.to_be_bytes()[..]));
    }
}

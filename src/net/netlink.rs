//! A small synchronous rtnetlink client (netavark's approach): one NETLINK_ROUTE socket, one
//! request at a time, answered by an ACK or a dump. The socket belongs to the network namespace
//! it was opened in, so a socket opened from a thread that joined a process's namespace
//! configures that namespace from the calling thread.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("{step}: {}", crate::process::stage::errno_text(*.errno))]
pub struct NetlinkError {
    pub step: &'static str,
    pub errno: Errno,
}

impl NetlinkError {
    fn io(step: &'static str) -> impl Fn(std::io::Error) -> NetlinkError {
        move |e| NetlinkError {
            step,
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// An open rtnetlink socket in one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::io("netlink socket"))?;
        socket
            .bind_auto()
            .map_err(NetlinkError::io("binding the netlink socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::io("connecting the netlink socket"))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// A socket in the network namespace `netns` (an fd of `/proc/PID/ns/net`), opened from a
    /// short-lived thread so the caller's own namespace never changes.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Self, NetlinkError> {
        let fd: RawFd = netns.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: fd stays open for the scope; setns only changes this thread.
                    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                        return Err(NetlinkError {
                            step: "joining the process's network namespace",
                            errno: Errno::last(),
                        });
                    }
                    Netlink::open()
                })
                .join()
                .unwrap_or(Err(NetlinkError {
                    step: "joining the process's network namespace",
                    errno: Errno::EIO,
                }))
        })
    }

    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<(), NetlinkError> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        self.seq = self.seq.wrapping_add(1);
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(NetlinkError::io("sending a netlink request"))?;
        Ok(())
    }

    /// Sends a request and collects its answers: the messages of a dump, or nothing for an ACK.
    fn request(
        &mut self,
        step: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.send(message, flags)?;
        let mut answers = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let len = self
                .socket
                .recv(&mut &mut buf[..], 0)
                .map_err(NetlinkError::io(step))?;
            let mut offset = 0;
            while offset < len {
                let packet = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..len])
                    .map_err(|_| NetlinkError {
                        step,
                        errno: Errno::EBADMSG,
                    })?;
                let size = packet.header.length as usize;
                if size == 0 {
                    return Err(NetlinkError {
                        step,
                        errno: Errno::EBADMSG,
                    });
                }
                offset += size;
                if packet.header.sequence_number != self.seq {
                    continue;
                }
                match packet.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(NetlinkError {
                                step,
                                errno: Errno::from_raw(-code.get()),
                            }),
                        }
                    }
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    _ => {}
                }
            }
            if flags & NLM_F_DUMP == 0 && answers.is_empty() {
                continue;
            }
        }
    }

    fn create(
        &mut self,
        step: &'static str,
        message: RouteNetlinkMessage,
    ) -> Result<(), NetlinkError> {
        self.request(step, message, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Creates the veth pair `name` ↔ `peer`, with `peer` created directly inside `peer_netns`.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        let mut peer_message = LinkMessage::default();
        peer_message.attributes = vec![
            LinkAttribute::IfName(peer.to_string()),
            LinkAttribute::NetNsFd(peer_netns.as_fd().as_raw_fd()),
        ];
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
            ]),
        ];
        self.create(
            "creating the veth pair",
            RouteNetlinkMessage::NewLink(message),
        )
    }

    /// Creates the bridge `name` (no address: only its ports talk over it).
    pub fn add_bridge(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.create("creating a bridge", RouteNetlinkMessage::NewLink(message))
    }

    /// Makes interface `index` a port of the bridge `bridge`.
    pub fn set_controller(&mut self, index: u32, bridge: u32) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes = vec![LinkAttribute::Controller(bridge)];
        self.request(
            "adding a port to a bridge",
            RouteNetlinkMessage::SetLink(message),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// The index of interface `name`.
    pub fn link_index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        let mut message = LinkMessage::default();
        message.attributes = vec![LinkAttribute::IfName(name.to_string())];
        let answers = self.request(
            "looking up an interface",
            RouteNetlinkMessage::GetLink(message),
            NLM_F_ACK,
        )?;
        answers
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })
            .ok_or(NetlinkError {
                step: "looking up an interface",
                errno: Errno::ENODEV,
            })
    }

    /// Makes interface `index` generate no IPv6 address (no link-local one, so no duplicate
    /// address detection, router solicitation or multicast listener report goes out when it
    /// comes up); the kernel still lets it carry IPv6 if an address is added. Before `set_up`.
    pub fn no_ipv6_addresses(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes = vec![LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )])];
        self.request(
            "turning off IPv6 addresses of an interface",
            RouteNetlinkMessage::SetLink(message),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Sets interface `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request(
            "setting an interface up",
            RouteNetlinkMessage::SetLink(message),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Adds `address/prefix` to interface `index`.
    pub fn add_address(
        &mut self,
        index: u32,
        address: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = match address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        message.header.prefix_len = prefix;
        message.header.index = index;
        message.attributes = vec![
            AddressAttribute::Local(address),
            AddressAttribute::Address(address),
        ];
        self.create(
            "adding an address",
            RouteNetlinkMessage::NewAddress(message),
        )
    }

    /// Adds the IPv4 default route through `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway))];
        self.create(
            "adding the default route",
            RouteNetlinkMessage::NewRoute(message),
        )
    }

    /// Deletes interface `name`; one already gone is not an error.
    pub fn delete_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.attributes = vec![LinkAttribute::IfName(name.to_string())];
        match self.request(
            "deleting an interface",
            RouteNetlinkMessage::DelLink(message),
            NLM_F_ACK,
        ) {
            Err(e) if e.errno == Errno::ENODEV => Ok(()),
            other => other.map(drop),
        }
    }

    /// Every IPv4 address of the namespace with its prefix length.
    pub fn ipv4_addresses(&mut self) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        let answers = self.request(
            "listing addresses",
            RouteNetlinkMessage::GetAddress(message),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .filter_map(|a| {
                let prefix = a.header.prefix_len;
                a.attributes.into_iter().find_map(|attr| match attr {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some((ip, prefix)),
                    _ => None,
                })
            })
            .collect())
    }
}

//! Network isolation of virtual processes: the modes, `partial` mode's veth links and address
//! pool, and the PortForwarder's nftables rules (written over netlink).

pub mod bpf;
pub mod conntrack;
pub mod firewall;
pub mod internal;
pub mod lock;
pub mod loopback;
pub mod mode;
pub mod netlink;
pub mod nfnetlink;
pub mod nft;
pub mod nft_batch;
pub mod nft_expr;
pub mod nft_table;
pub mod nft_wire;
pub mod pool;
pub mod ports;
pub mod portstats;
pub mod redirect;
pub mod setup;
pub mod sockets;
pub mod traffic;
pub mod userspace;
pub mod veth;

pub use mode::NetMode;

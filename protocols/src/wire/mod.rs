//! Link, network and transport layer views: Ethernet (with VLAN tags), IPv4,
//! UDP, plus [`udp_frame`], which walks all three, and an encoder for the
//! frames ticklane's generator and sender produce.

pub mod ethernet;
pub mod frame;
pub mod ipv4;
pub mod udp;

pub use frame::{
    FrameError, UdpFrame, UdpFrameSpec, parse_ethernet_udp, parse_ipv4_udp, write_udp_frame,
};

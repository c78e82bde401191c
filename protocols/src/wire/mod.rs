//! Link, network and transport layer views: Ethernet (with VLAN tags), IPv4,
//! UDP, plus [`frame`], which walks all three, the Internet [`checksum`], and
//! an encoder for the frames ticklane's generator and sender produce.

pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod ipv4;
pub mod udp;

pub use frame::{
    FrameError, UdpFrame, UdpFrameSpec, parse_ethernet_udp, parse_ipv4_udp, write_udp_frame,
};

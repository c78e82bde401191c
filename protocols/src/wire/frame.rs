//! The whole stack at once: Ethernet (or raw IP) → IPv4 → UDP → payload, and
//! the reverse, for the frames ticklane's generator writes.

use super::checksum::{self, UdpChecksum};
use super::ethernet::{self, ETHERTYPE_IPV4, EthernetError, EthernetFrame};
use super::ipv4::{self, Ipv4Error, Ipv4Packet, PROTOCOL_UDP};
use super::udp::{self, UdpDatagram, UdpError};

/// A UDP datagram found inside a frame, with its addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    /// IPv4 source address.
    pub source: [u8; 4],
    /// IPv4 destination address (the multicast group for a feed).
    pub destination: [u8; 4],
    /// UDP source port.
    pub source_port: u16,
    /// UDP destination port.
    pub destination_port: u16,
    /// The UDP payload (a MoldUDP64 packet for a feed).
    pub payload: &'a [u8],
    /// The IPv4 header, options included.
    ip_header: &'a [u8],
    /// The UDP header and payload, as long as the UDP length says.
    datagram: &'a [u8],
}

impl UdpFrame<'_> {
    /// Whether the IPv4 header checksum is right.
    #[inline]
    pub fn ipv4_checksum_ok(&self) -> bool {
        checksum::sum(self.ip_header) == 0xffff
    }

    /// What the UDP checksum says of the datagram.
    #[inline]
    pub fn udp_checksum(&self) -> UdpChecksum {
        checksum::verify_udp(self.source, self.destination, self.datagram)
    }
}

/// Why a frame did not yield a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A well-formed frame of another protocol (ARP, IPv6, …).
    NotIpv4 {
        /// Its EtherType.
        ethertype: u16,
    },
    /// A well-formed IPv4 packet that is not UDP.
    NotUdp {
        /// Its IP protocol number.
        protocol: u8,
    },
    /// A malformed Ethernet header.
    Ethernet(EthernetError),
    /// A malformed IPv4 header, or a fragment.
    Ipv4(Ipv4Error),
    /// A malformed UDP header.
    Udp(UdpError),
}

impl FrameError {
    /// True for valid traffic that simply is not UDP over IPv4; such frames are
    /// skipped quietly, while the other errors count as malformed.
    pub fn is_foreign(&self) -> bool {
        matches!(self, Self::NotIpv4 { .. } | Self::NotUdp { .. })
    }
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotIpv4 { ethertype } => write!(f, "not IPv4 (EtherType {ethertype:#06x})"),
            Self::NotUdp { protocol } => write!(f, "not UDP (IP protocol {protocol})"),
            Self::Ethernet(EthernetError::Truncated) => f.write_str("Ethernet header truncated"),
            Self::Ethernet(EthernetError::TooManyTags) => f.write_str("more than two VLAN tags"),
            Self::Ipv4(Ipv4Error::Truncated) => f.write_str("IPv4 packet truncated"),
            Self::Ipv4(Ipv4Error::NotVersion4) => f.write_str("IP version is not 4"),
            Self::Ipv4(Ipv4Error::BadHeaderLength) => {
                f.write_str("bad IPv4 header or total length")
            }
            Self::Ipv4(Ipv4Error::Fragment) => {
                f.write_str("IPv4 fragment (feeds are never fragmented)")
            }
            Self::Udp(UdpError::Truncated) => f.write_str("UDP datagram truncated"),
            Self::Udp(UdpError::BadLength) => f.write_str("UDP length below 8"),
        }
    }
}

/// Walks Ethernet → IPv4 → UDP.
pub fn parse_ethernet_udp(frame: &[u8]) -> Result<UdpFrame<'_>, FrameError> {
    let eth = EthernetFrame::new_checked(frame).map_err(FrameError::Ethernet)?;
    if eth.ethertype() != ETHERTYPE_IPV4 {
        return Err(FrameError::NotIpv4 {
            ethertype: eth.ethertype(),
        });
    }
    let start = frame.len() - eth.payload().len();
    parse_ipv4_udp(&frame[start..])
}

/// Walks IPv4 → UDP (for raw-IP captures).
pub fn parse_ipv4_udp(packet: &[u8]) -> Result<UdpFrame<'_>, FrameError> {
    let ip = Ipv4Packet::new_checked(packet).map_err(FrameError::Ipv4)?;
    if ip.protocol() != PROTOCOL_UDP {
        return Err(FrameError::NotUdp {
            protocol: ip.protocol(),
        });
    }
    let (source, destination) = (ip.source(), ip.destination());
    let ip_payload = &packet[ip.header_len()..ip.total_len()];
    let udp = UdpDatagram::new_checked(ip_payload).map_err(FrameError::Udp)?;
    let datagram_len = udp::HEADER_LEN + udp.payload().len();
    Ok(UdpFrame {
        source,
        destination,
        source_port: udp.source_port(),
        destination_port: udp.destination_port(),
        payload: &ip_payload[udp::HEADER_LEN..datagram_len],
        ip_header: &packet[..ip.header_len()],
        datagram: &ip_payload[..datagram_len],
    })
}

/// Addressing of the UDP frames [`write_udp_frame`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrameSpec {
    /// Source MAC address.
    pub source_mac: [u8; 6],
    /// Destination MAC address.
    pub destination_mac: [u8; 6],
    /// IPv4 source address.
    pub source: [u8; 4],
    /// IPv4 destination address.
    pub destination: [u8; 4],
    /// UDP source port.
    pub source_port: u16,
    /// UDP destination port.
    pub destination_port: u16,
    /// IPv4 time to live.
    pub ttl: u8,
}

impl UdpFrameSpec {
    /// A frame to a multicast group: the destination MAC is the group's
    /// (01:00:5e + the low 23 bits of the group).
    pub fn multicast(source_mac: [u8; 6], source: [u8; 4], group: [u8; 4], port: u16) -> Self {
        Self {
            source_mac,
            destination_mac: [0x01, 0x00, 0x5e, group[1] & 0x7f, group[2], group[3]],
            source,
            destination: group,
            source_port: port,
            destination_port: port,
            ttl: 8,
        }
    }
}

/// Bytes a frame adds around its UDP payload (Ethernet, IPv4, UDP headers).
pub const FRAME_OVERHEAD: usize = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + udp::HEADER_LEN;

/// Writes an untagged Ethernet/IPv4/UDP frame carrying `payload` into `out`
/// and returns its length, or `None` when `out` is too small or the payload
/// does not fit in one IPv4 packet.
pub fn write_udp_frame(out: &mut [u8], spec: &UdpFrameSpec, payload: &[u8]) -> Option<usize> {
    let len = FRAME_OVERHEAD + payload.len();
    let ip_len = u16::try_from(len - ethernet::HEADER_LEN).ok()?;
    let frame = out.get_mut(..len)?;
    let (eth, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
    eth[..6].copy_from_slice(&spec.destination_mac);
    eth[6..12].copy_from_slice(&spec.source_mac);
    eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let (ip, rest) = rest.split_at_mut(ipv4::MIN_HEADER_LEN);
    let ip: &mut [u8; ipv4::MIN_HEADER_LEN] = ip.try_into().ok()?;
    ipv4::write_header(
        ip,
        ip_len,
        spec.ttl,
        PROTOCOL_UDP,
        spec.source,
        spec.destination,
    );
    let (udp, body) = rest.split_at_mut(udp::HEADER_LEN);
    let udp_len = ip_len - ipv4::MIN_HEADER_LEN as u16;
    udp[0..2].copy_from_slice(&spec.source_port.to_be_bytes());
    udp[2..4].copy_from_slice(&spec.destination_port.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].fill(0);
    body.copy_from_slice(payload);
    let sum = checksum::udp(
        spec.source,
        spec.destination,
        &frame[FRAME_OVERHEAD - udp::HEADER_LEN..],
    );
    frame[FRAME_OVERHEAD - 2..FRAME_OVERHEAD].copy_from_slice(&sum.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: UdpFrameSpec = UdpFrameSpec {
        source_mac: [2, 0, 0, 0, 0, 1],
        destination_mac: [1, 0, 0x5e, 1, 2, 3],
        source: [198, 18, 0, 1],
        destination: [239, 1, 2, 3],
        source_port: 40000,
        destination_port: 26477,
        ttl: 4,
    };

    #[test]
    fn round_trip() {
        let mut buf = [0u8; 128];
        let n = write_udp_frame(&mut buf, &SPEC, b"hello mold").unwrap();
        assert_eq!(n, FRAME_OVERHEAD + 10);
        let f = parse_ethernet_udp(&buf[..n]).unwrap();
        assert_eq!(f.source, SPEC.source);
        assert_eq!(f.destination, SPEC.destination);
        assert_eq!(f.source_port, 40000);
        assert_eq!(f.destination_port, 26477);
        assert_eq!(f.payload, b"hello mold");
        let ip = Ipv4Packet::new_checked(&buf[14..n]).unwrap();
        assert!(ip.checksum_ok());
        assert!(f.ipv4_checksum_ok());
        assert_eq!(f.udp_checksum(), UdpChecksum::Valid);
        // The UDP checksum verifies the textbook way too: summing the
        // datagram with its checksum over the pseudo-header gives zero.
        let mut pseudo_and_udp = [0u8; 12 + 18];
        pseudo_and_udp[..4].copy_from_slice(&SPEC.source);
        pseudo_and_udp[4..8].copy_from_slice(&SPEC.destination);
        pseudo_and_udp[9] = PROTOCOL_UDP;
        pseudo_and_udp[11] = 18;
        pseudo_and_udp[12..].copy_from_slice(&buf[34..n]);
        assert_eq!(ipv4::checksum(&pseudo_and_udp), 0);
    }

    #[test]
    fn damaged_headers_and_payloads_are_seen() {
        let mut buf = [0u8; 128];
        let n = write_udp_frame(&mut buf, &SPEC, b"hello mold").unwrap();
        let mut payload = buf;
        payload[n - 1] ^= 1;
        let f = parse_ethernet_udp(&payload[..n]).unwrap();
        assert!(f.ipv4_checksum_ok());
        assert_eq!(f.udp_checksum(), UdpChecksum::Invalid);
        let mut ttl = buf;
        ttl[14 + 8] -= 1;
        let f = parse_ethernet_udp(&ttl[..n]).unwrap();
        assert!(!f.ipv4_checksum_ok());
        assert_eq!(f.udp_checksum(), UdpChecksum::Valid, "TTL is not covered");
        let mut none = buf;
        none[40..42].fill(0);
        let f = parse_ethernet_udp(&none[..n]).unwrap();
        assert_eq!(f.udp_checksum(), UdpChecksum::Absent);
        // Ethernet padding past the IP length is not summed.
        let mut padded = buf;
        padded[n..n + 6].fill(0xee);
        let f = parse_ethernet_udp(&padded[..n + 6]).unwrap();
        assert_eq!(f.udp_checksum(), UdpChecksum::Valid);
    }

    #[test]
    fn multicast_mac_follows_the_group() {
        let spec = UdpFrameSpec::multicast([2; 6], [198, 18, 0, 1], [239, 129, 2, 3], 1);
        assert_eq!(spec.destination_mac, [0x01, 0x00, 0x5e, 0x01, 2, 3]);
    }

    #[test]
    fn foreign_traffic_is_told_apart_from_malformed() {
        let mut buf = [0u8; 64];
        let n = write_udp_frame(&mut buf, &SPEC, b"x").unwrap();
        let mut arp = buf;
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(parse_ethernet_udp(&arp[..n]).unwrap_err().is_foreign());
        let mut tcp = buf;
        tcp[14 + 9] = 6;
        assert_eq!(
            parse_ethernet_udp(&tcp[..n]).unwrap_err(),
            FrameError::NotUdp { protocol: 6 }
        );
        let err = parse_ethernet_udp(&buf[..n - 1]).unwrap_err();
        assert_eq!(err, FrameError::Ipv4(Ipv4Error::Truncated));
        assert!(!err.is_foreign());
    }

    #[test]
    fn too_small_buffer_is_refused() {
        let mut buf = [0u8; 40];
        assert_eq!(write_udp_frame(&mut buf, &SPEC, b"0123456789"), None);
    }
}

//! IPv4 headers, options included. Fragments are recognised and refused:
//! a market-data datagram is never fragmented, and a fragment's payload is not
//! a UDP datagram on its own.

/// IP protocol number of UDP.
pub const PROTOCOL_UDP: u8 = 17;
/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;

mod field {
    pub(super) const VERSION_IHL: usize = 0;
    pub(super) const TOTAL_LEN: usize = 2;
    pub(super) const FLAGS_FRAGMENT: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SOURCE: usize = 12;
    pub(super) const DESTINATION: usize = 16;
}

const MORE_FRAGMENTS: u16 = 0x2000;
const FRAGMENT_OFFSET: u16 = 0x1fff;

/// Why bytes are not an IPv4 packet this crate can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Shorter than the header, or than the total length the header claims.
    Truncated,
    /// The version nibble is not 4.
    NotVersion4,
    /// IHL below 5, or a total length smaller than the header.
    BadHeaderLength,
    /// A fragment (more-fragments flag or a non-zero offset).
    Fragment,
}

/// A checked view of an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
    header_len: usize,
    total_len: usize,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version, header length, total length against the buffer, and
    /// refuses fragments. Bytes past the total length (Ethernet padding) are
    /// ignored.
    pub fn new_checked(buffer: T) -> Result<Self, Ipv4Error> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        if b[field::VERSION_IHL] >> 4 != 4 {
            return Err(Ipv4Error::NotVersion4);
        }
        let header_len = usize::from(b[field::VERSION_IHL] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([
            b[field::TOTAL_LEN],
            b[field::TOTAL_LEN + 1],
        ]));
        if header_len < MIN_HEADER_LEN || total_len < header_len {
            return Err(Ipv4Error::BadHeaderLength);
        }
        if total_len > b.len() {
            return Err(Ipv4Error::Truncated);
        }
        let flags = u16::from_be_bytes([b[field::FLAGS_FRAGMENT], b[field::FLAGS_FRAGMENT + 1]]);
        if flags & (MORE_FRAGMENTS | FRAGMENT_OFFSET) != 0 {
            return Err(Ipv4Error::Fragment);
        }
        Ok(Self {
            buffer,
            header_len,
            total_len,
        })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Total length from the header.
    pub fn total_len(&self) -> usize {
        self.total_len
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.bytes()[field::TTL]
    }

    /// IP protocol number.
    pub fn protocol(&self) -> u8 {
        self.bytes()[field::PROTOCOL]
    }

    /// Source address.
    pub fn source(&self) -> [u8; 4] {
        let b = self.bytes();
        [
            b[field::SOURCE],
            b[field::SOURCE + 1],
            b[field::SOURCE + 2],
            b[field::SOURCE + 3],
        ]
    }

    /// Destination address.
    pub fn destination(&self) -> [u8; 4] {
        let b = self.bytes();
        let d = field::DESTINATION;
        [b[d], b[d + 1], b[d + 2], b[d + 3]]
    }

    /// Whether the header checksum is right.
    pub fn checksum_ok(&self) -> bool {
        checksum(&self.bytes()[..self.header_len]) == 0
    }

    /// The bytes after the header, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len..self.total_len]
    }
}

/// The Internet checksum (RFC 1071) of `bytes`, folded and complemented:
/// what a header carries, and 0 over a header that carries the right one.
pub fn checksum(bytes: &[u8]) -> u16 {
    !super::checksum::sum(bytes)
}

/// Writes a 20-byte header (no options, DF set, TTL given) into `out[..20]`.
pub(crate) fn write_header(
    out: &mut [u8; MIN_HEADER_LEN],
    total_len: u16,
    ttl: u8,
    protocol: u8,
    source: [u8; 4],
    destination: [u8; 4],
) {
    out.fill(0);
    out[field::VERSION_IHL] = 0x45;
    out[field::TOTAL_LEN..field::TOTAL_LEN + 2].copy_from_slice(&total_len.to_be_bytes());
    out[field::FLAGS_FRAGMENT] = 0x40;
    out[field::TTL] = ttl;
    out[field::PROTOCOL] = protocol;
    out[field::SOURCE..field::SOURCE + 4].copy_from_slice(&source);
    out[field::DESTINATION..field::DESTINATION + 4].copy_from_slice(&destination);
    let sum = checksum(&out[..]);
    out[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(total: u16) -> [u8; 32] {
        let mut p = [0u8; 32];
        let mut h = [0u8; 20];
        write_header(
            &mut h,
            total,
            5,
            PROTOCOL_UDP,
            [198, 18, 0, 1],
            [239, 1, 2, 3],
        );
        p[..20].copy_from_slice(&h);
        p
    }

    #[test]
    fn reads_a_written_header() {
        let p = packet(28);
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert!(ip.checksum_ok());
        assert_eq!(ip.protocol(), PROTOCOL_UDP);
        assert_eq!(ip.ttl(), 5);
        assert_eq!(ip.source(), [198, 18, 0, 1]);
        assert_eq!(ip.destination(), [239, 1, 2, 3]);
        assert_eq!(
            ip.payload().len(),
            8,
            "padding past total length is not payload"
        );
    }

    #[test]
    fn options_are_skipped() {
        let mut p = packet(32);
        p[0] = 0x46; // IHL 6: one option word
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.payload().len(), 8);
    }

    #[test]
    fn rejects_bad_headers() {
        let p = packet(28);
        assert_eq!(
            Ipv4Packet::new_checked(&p[..19]).unwrap_err(),
            Ipv4Error::Truncated
        );
        assert_eq!(
            Ipv4Packet::new_checked(&p[..27]).unwrap_err(),
            Ipv4Error::Truncated
        );
        let mut v6 = p;
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            Ipv4Error::NotVersion4
        );
        let mut short_ihl = p;
        short_ihl[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&short_ihl[..]).unwrap_err(),
            Ipv4Error::BadHeaderLength
        );
        let mut tiny_total = p;
        tiny_total[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&tiny_total[..]).unwrap_err(),
            Ipv4Error::BadHeaderLength
        );
    }

    #[test]
    fn fragments_are_refused() {
        let mut first = packet(28);
        first[6] = 0x20; // more fragments
        assert_eq!(
            Ipv4Packet::new_checked(&first[..]).unwrap_err(),
            Ipv4Error::Fragment
        );
        let mut later = packet(28);
        later[7] = 0x10; // offset 16*8
        assert_eq!(
            Ipv4Packet::new_checked(&later[..]).unwrap_err(),
            Ipv4Error::Fragment
        );
    }
}

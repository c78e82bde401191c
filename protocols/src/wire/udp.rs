//! UDP datagrams.

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub(super) const SOURCE_PORT: usize = 0;
    pub(super) const DESTINATION_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
}

/// Why bytes are not a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpError {
    /// Shorter than the header, or than the length the header claims.
    Truncated,
    /// A length field below the header's own 8 bytes.
    BadLength,
}

/// A checked view of a UDP datagram.
#[derive(Debug, Clone, Copy)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buffer: T,
    length: usize,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    /// Checks the header and the length field against the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, UdpError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(UdpError::Truncated);
        }
        let length = usize::from(u16::from_be_bytes([b[field::LENGTH], b[field::LENGTH + 1]]));
        if length < HEADER_LEN {
            return Err(UdpError::BadLength);
        }
        if length > b.len() {
            return Err(UdpError::Truncated);
        }
        Ok(Self { buffer, length })
    }

    fn port(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Source port.
    pub fn source_port(&self) -> u16 {
        self.port(field::SOURCE_PORT)
    }

    /// Destination port.
    pub fn destination_port(&self) -> u16 {
        self.port(field::DESTINATION_PORT)
    }

    /// The bytes after the header, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.length]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ports_and_payload() {
        let d = [0x67, 0x6d, 0x67, 0x6d, 0, 11, 0, 0, 1, 2, 3, 99];
        let u = UdpDatagram::new_checked(&d[..]).unwrap();
        assert_eq!(u.source_port(), 26477);
        assert_eq!(u.destination_port(), 26477);
        assert_eq!(u.payload(), &[1, 2, 3]);
    }

    #[test]
    fn rejects_lying_lengths() {
        let mut d = [0u8; 10];
        d[5] = 11;
        assert_eq!(
            UdpDatagram::new_checked(&d[..]).unwrap_err(),
            UdpError::Truncated
        );
        d[5] = 7;
        assert_eq!(
            UdpDatagram::new_checked(&d[..]).unwrap_err(),
            UdpError::BadLength
        );
        assert_eq!(
            UdpDatagram::new_checked(&d[..7]).unwrap_err(),
            UdpError::Truncated
        );
    }
}

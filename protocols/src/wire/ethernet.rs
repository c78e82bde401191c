//! Ethernet II frames with up to two VLAN tags (802.1Q, 802.1ad QinQ).

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of a customer VLAN tag (802.1Q).
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of a service VLAN tag (802.1ad, QinQ outer tag).
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ outer tag still sent by some switches.
pub const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

/// Most VLAN tags one frame may carry (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

mod field {
    use core::ops::Range;
    pub(super) const DESTINATION: Range<usize> = 0..6;
    pub(super) const SOURCE: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: usize = 12;
    pub(super) const HEADER_LEN: usize = 14;
    pub(super) const TAG_LEN: usize = 4;
}

/// Why bytes are not an Ethernet frame this crate can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EthernetError {
    /// Shorter than the Ethernet header plus the VLAN tags it announces.
    Truncated,
    /// More than [`MAX_VLAN_TAGS`] stacked VLAN tags.
    TooManyTags,
}

/// A checked view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
    payload_offset: usize,
    ethertype: u16,
    vlan_tags: u8,
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Validates the header and walks the VLAN tags, once.
    pub fn new_checked(buffer: T) -> Result<Self, EthernetError> {
        let bytes = buffer.as_ref();
        let mut offset = field::ETHERTYPE;
        let mut ethertype = be16(bytes, offset).ok_or(EthernetError::Truncated)?;
        let mut vlan_tags = 0u8;
        while matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        ) {
            if usize::from(vlan_tags) == MAX_VLAN_TAGS {
                return Err(EthernetError::TooManyTags);
            }
            vlan_tags += 1;
            offset += field::TAG_LEN;
            ethertype = be16(bytes, offset).ok_or(EthernetError::Truncated)?;
        }
        Ok(Self {
            payload_offset: offset + 2,
            ethertype,
            vlan_tags,
            buffer,
        })
    }

    /// Destination MAC address.
    pub fn destination(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        mac
    }

    /// Source MAC address.
    pub fn source(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        mac
    }

    /// The EtherType after all VLAN tags.
    pub fn ethertype(&self) -> u16 {
        self.ethertype
    }

    /// How many VLAN tags the frame carried.
    pub fn vlan_tags(&self) -> u8 {
        self.vlan_tags
    }

    /// The bytes after the (last) EtherType.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_offset..]
    }
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = field::HEADER_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_frame() {
        let mut f = [0u8; 20];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(e.vlan_tags(), 0);
        assert_eq!(e.payload()[0], 0x45);
    }

    #[test]
    fn qinq_frame() {
        let mut f = [0u8; 24];
        f[12..14].copy_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
        f[16..18].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        f[20..22].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.vlan_tags(), 2);
        assert_eq!(e.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(e.payload().len(), 2);
    }

    #[test]
    fn three_tags_rejected_and_truncation_detected() {
        let mut f = [0u8; 30];
        for at in [12, 16, 20] {
            f[at..at + 2].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        }
        assert_eq!(
            EthernetFrame::new_checked(&f[..]).unwrap_err(),
            EthernetError::TooManyTags
        );
        assert_eq!(
            EthernetFrame::new_checked(&f[..13]).unwrap_err(),
            EthernetError::Truncated
        );
        assert_eq!(
            EthernetFrame::new_checked(&f[..17]).unwrap_err(),
            EthernetError::Truncated
        );
    }
}

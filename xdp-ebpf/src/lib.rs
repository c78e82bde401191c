//! # ticklane-xdp: the kernel side
//!
//! The XDP program (`src/steer.bpf.c`, compiled by clang at build time and
//! embedded here as [`PROGRAM`]) and the Rust mirror of what it shares with
//! userspace (`include/ticklane_xdp.h`): the subscription key and value
//! (what a feed's frames must carry: VLAN tags, source address) and the
//! counter indices. The tests read the C header and check that both agree.
#![no_std]
#![deny(unsafe_code)]

/// The compiled program (an ELF object for the BPF target), 8-byte aligned
/// as ELF parsers expect.
pub static PROGRAM: &[u8] = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/steer.bpf.o"))).0;

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

/// Name of the XDP program in the object.
pub const PROGRAM_NAME: &str = "ticklane_steer";
/// Name of the subscription map.
pub const SUBSCRIPTIONS_MAP: &str = "subs";
/// Name of the XSKMAP.
pub const SOCKETS_MAP: &str = "xsks";
/// Name of the per-CPU counter array.
pub const COUNTERS_MAP: &str = "counters";

/// A subscription: `struct tl_sub_key`. Group and port in network byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct SubKey {
    /// Destination group, network order (the four octets as they are on the wire).
    pub group: [u8; 4],
    /// Destination port, network order.
    pub port: [u8; 2],
    /// Always 0.
    pub pad: u16,
}

const _: () = assert!(size_of::<SubKey>() == 8);

#[cfg(feature = "aya")]
#[allow(
    unsafe_code,
    reason = "aya's Pod is an unsafe marker trait; proof below"
)]
// SAFETY: `SubKey` is `#[repr(C)]` with fields of 4, 2 and 2 bytes in that
// order, so it has no padding (asserted 8 bytes above) and every bit pattern
// is a valid value; it is `Copy` and holds no pointers. That is what aya's
// `Pod` requires of a map key, and it matches `struct tl_sub_key` byte for
// byte (checked against the C header by this crate's tests).
unsafe impl aya::Pod for SubKey {}

impl SubKey {
    /// The key of a group and a port.
    pub fn new(group: [u8; 4], port: u16) -> Self {
        Self {
            group,
            port: port.to_be_bytes(),
            pad: 0,
        }
    }
}

/// The VLAN tags a feed's frames carry on the interface, as the XDP program
/// checks them. IDs are 12 bits; 0 (priority tag) and 4095 are not VLANs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Vlan {
    /// No tag (a lone priority tag, ID 0, counts as none, as in the kernel).
    #[default]
    Untagged,
    /// One 802.1Q tag with this ID.
    Tagged(u16),
    /// Two tags (QinQ): the outer ID, then the inner.
    QinQ(u16, u16),
}

/// What a subscribed feed's frames must carry: `struct tl_sub_val`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct SubValue {
    /// Required IPv4 source, network order; `[0; 4]` = any.
    pub source: [u8; 4],
    /// Expected VLAN IDs, outermost first, host order; only the first
    /// `vlan_tags` count.
    pub vlan: [u16; 2],
    /// Tags the frames carry: 0, 1 or 2.
    pub vlan_tags: u8,
    /// Always 0.
    pub pad: [u8; 3],
}

const _: () = assert!(size_of::<SubValue>() == 12);

#[cfg(feature = "aya")]
#[allow(
    unsafe_code,
    reason = "aya's Pod is an unsafe marker trait; proof below"
)]
// SAFETY: `SubValue` is `#[repr(C)]` with fields of 4, 2×2, 1 and 3 bytes,
// each at an offset that is a multiple of its alignment, so it has no
// padding (asserted 12 bytes above) and every bit pattern is a valid value;
// it is `Copy` and holds no pointers. That is what aya's `Pod` requires of a
// map value, and it matches `struct tl_sub_val` byte for byte (checked
// against the C header by this crate's tests).
unsafe impl aya::Pod for SubValue {}

impl SubValue {
    /// Frames from `source` (any when `None`) carrying the tags of `vlan`.
    pub fn new(source: Option<[u8; 4]>, vlan: Vlan) -> Self {
        let (vlan, vlan_tags) = match vlan {
            Vlan::Untagged => ([0, 0], 0),
            Vlan::Tagged(id) => ([id, 0], 1),
            Vlan::QinQ(outer, inner) => ([outer, inner], 2),
        };
        Self {
            source: source.unwrap_or([0; 4]),
            vlan,
            vlan_tags,
            pad: [0; 3],
        }
    }
}

/// The per-CPU counters, `TL_CNT_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Counter {
    /// Every frame the program ran on.
    Seen = 0,
    /// IPv4/UDP frames to a subscribed group:port.
    Matched = 1,
    /// Matched frames handed to the AF_XDP socket.
    Redirected = 2,
    /// Frames given to the kernel stack.
    Passed = 3,
    /// Frames cut short inside a header.
    Malformed = 4,
    /// IPv4 fragments (passed).
    Fragment = 5,
    /// Matched, but no socket on this queue (passed).
    NoSocket = 6,
    /// Matched, but not the feed's VLAN tags (passed).
    Vlan = 7,
    /// Matched, but not from the feed's source (passed).
    Source = 8,
}

impl Counter {
    /// Every counter, by index.
    pub const ALL: [Counter; 9] = [
        Counter::Seen,
        Counter::Matched,
        Counter::Redirected,
        Counter::Passed,
        Counter::Malformed,
        Counter::Fragment,
        Counter::NoSocket,
        Counter::Vlan,
        Counter::Source,
    ];

    /// Its name in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Matched => "matched",
            Counter::Redirected => "redirected",
            Counter::Passed => "passed",
            Counter::Malformed => "malformed",
            Counter::Fragment => "fragment",
            Counter::NoSocket => "no_socket",
            Counter::Vlan => "vlan_mismatch",
            Counter::Source => "wrong_source",
        }
    }
}

/// `struct tl_rx_meta`: the receive time the program writes in a steered
/// frame's metadata area, the [`RX_META_LEN`] bytes just before the packet.
/// Its fields, in host byte order: `rx_ns` (u64, at 0), `clock` (u32, at 8),
/// `magic` (u32, at 12).
pub const RX_META_LEN: usize = 16;
/// `TL_RX_MAGIC`: the program wrote the metadata.
pub const RX_MAGIC: u32 = 0x544c_5258;
/// `TL_RX_XDP_SOFTWARE`: `rx_ns` is `bpf_ktime_get_ns()` when the program
/// ran (CLOCK_MONOTONIC).
pub const RX_XDP_SOFTWARE: u32 = 1;

/// `TL_MAX_QUEUES`: entries of the XSKMAP.
pub const MAX_QUEUES: u32 = 64;
/// `TL_MAX_SUBSCRIPTIONS`: entries of the subscription map.
pub const MAX_SUBSCRIPTIONS: u32 = 1024;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    fn header() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/include/ticklane_xdp.h"
        ))
        .unwrap()
    }

    fn define(h: &str, name: &str) -> u32 {
        h.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("#define") && w.next() == Some(name))
                    .then(|| w.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("{name} is not defined in the header"))
    }

    #[test]
    fn counters_match_the_c_header() {
        let h = header();
        let names = [
            "SEEN",
            "MATCHED",
            "REDIRECTED",
            "PASSED",
            "MALFORMED",
            "FRAGMENT",
            "NO_SOCKET",
            "VLAN",
            "SOURCE",
        ];
        for (c, n) in Counter::ALL.iter().zip(names) {
            assert_eq!(*c as u32, define(&h, &std::format!("TL_CNT_{n}")), "{n}");
        }
        assert_eq!(Counter::ALL.len() as u32, define(&h, "TL_NUM_COUNTERS"));
        assert_eq!(MAX_QUEUES, define(&h, "TL_MAX_QUEUES"));
        assert_eq!(MAX_SUBSCRIPTIONS, define(&h, "TL_MAX_SUBSCRIPTIONS"));
        assert_eq!(RX_XDP_SOFTWARE, define(&h, "TL_RX_XDP_SOFTWARE"));
        assert!(h.contains("#define TL_RX_MAGIC 0x544c5258"));
        assert_eq!(RX_MAGIC, 0x544c_5258);
    }

    #[test]
    fn rx_meta_layout_matches_the_c_struct() {
        let h = header();
        assert!(
            h.contains("__u64 rx_ns;") && h.contains("__u32 clock;") && h.contains("__u32 magic;"),
            "fields of struct tl_rx_meta"
        );
        let fields = ["rx_ns;", "clock;", "magic;"].map(|f| h.find(f).unwrap());
        assert!(fields.is_sorted(), "field order rx_ns, clock, magic");
        assert!(h.contains("sizeof(struct tl_rx_meta) == 16"));
        assert_eq!(RX_META_LEN, 16);
    }

    #[test]
    fn key_layout_matches_the_c_struct() {
        let h = header();
        assert!(
            h.contains("__u32 group;\n\t__u16 port;\n\t__u16 pad;"),
            "field order group, port, pad"
        );
        assert!(h.contains("sizeof(struct tl_sub_key) == 8"));
        assert_eq!(core::mem::offset_of!(SubKey, group), 0);
        assert_eq!(core::mem::offset_of!(SubKey, port), 4);
        assert_eq!(core::mem::offset_of!(SubKey, pad), 6);
        assert_eq!(SubKey::new([239, 1, 2, 3], 26477).port, [0x67, 0x6d]);
    }

    #[test]
    fn value_layout_matches_the_c_struct() {
        let h = header();
        assert!(
            h.contains("__u32 source;")
                && h.contains("__u16 vlan[2];")
                && h.contains("__u8 vlan_tags;")
                && h.contains("__u8 pad[3];"),
            "fields of struct tl_sub_val"
        );
        let fields = ["source;", "vlan[2];", "vlan_tags;", "pad[3];"].map(|f| h.find(f).unwrap());
        assert!(
            fields.is_sorted(),
            "field order source, vlan, vlan_tags, pad"
        );
        assert!(h.contains("sizeof(struct tl_sub_val) == 12"));
        assert_eq!(core::mem::offset_of!(SubValue, source), 0);
        assert_eq!(core::mem::offset_of!(SubValue, vlan), 4);
        assert_eq!(core::mem::offset_of!(SubValue, vlan_tags), 8);
        assert_eq!(core::mem::offset_of!(SubValue, pad), 9);
        let v = SubValue::new(Some([198, 18, 0, 1]), Vlan::QinQ(100, 200));
        assert_eq!(
            (v.source, v.vlan, v.vlan_tags),
            ([198, 18, 0, 1], [100, 200], 2)
        );
        assert_eq!(SubValue::default(), SubValue::new(None, Vlan::Untagged));
    }

    #[test]
    fn the_object_is_an_elf_for_bpf() {
        assert_eq!(&PROGRAM[..4], b"\x7fELF");
        assert_eq!(
            u16::from_le_bytes([PROGRAM[18], PROGRAM[19]]),
            247,
            "EM_BPF"
        );
    }
}

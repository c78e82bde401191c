//! What a frame that XDP steered past the kernel's stack must pass before
//! its payload goes on: the checks that stack would have made. The frame is
//! walked down to its UDP payload (Ethernet, IPv4, UDP, lengths checked), it
//! must be one of the feeds (group, port, and source when the feed has
//! one), and its IPv4 header and UDP checksums must be right, unless the NIC
//! is trusted to have dropped the frames whose checksums were wrong. Each
//! refusal is counted by kind; nothing is allocated, nothing is logged.
//!
//! The XDP program checks the VLAN tags and the source before steering
//! (see `xdp-ebpf`); the source is checked again here because it costs a
//! compare and the feed filter knows it anyway.

use std::net::Ipv4Addr;

use ticklane_capture::feed::{Feed, FeedFilter, NotAFeed};
use ticklane_protocols::wire::{self, checksum::UdpChecksum};

use super::{FeedChangeError, SourceCounters};
use crate::stats::MAX_LINES;

/// A feed line given up: it matches no datagram (no feed is sent to port
/// 0, and the XDP program steers no frame to it), and keeps the line
/// numbers of the other feeds as they are.
const VACANT: Feed = Feed {
    group: Ipv4Addr::UNSPECIFIED,
    port: 0,
    source: None,
};

/// Whether the checksums of steered frames are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    /// Verify the IPv4 header and UDP checksums of every frame of a feed.
    Verify,
    /// Trust the NIC: it drops frames with wrong checksums before XDP sees
    /// them (a NIC that only marks them, or a veth, does not).
    TrustNic,
}

/// The checks, and the counts of what failed them.
#[derive(Debug)]
pub struct Admission {
    filter: FeedFilter,
    checksums: Checksums,
    counters: SourceCounters,
}

impl Admission {
    /// Admits the frames of `filter`'s feeds, checking checksums as told.
    /// Room for [`MAX_LINES`] feeds is made here, so that adding one later
    /// allocates nothing.
    pub fn new(mut filter: FeedFilter, checksums: Checksums) -> Self {
        filter
            .feeds
            .reserve(MAX_LINES.saturating_sub(filter.feeds.len()));
        Self {
            filter,
            checksums,
            counters: SourceCounters::default(),
        }
    }

    /// The feed line and UDP payload of `frame`, or `None` (counted) when
    /// the frame is refused.
    #[inline]
    pub fn admit<'a>(&mut self, frame: &'a [u8]) -> Option<(usize, &'a [u8])> {
        let c = &mut self.counters;
        let udp = match wire::parse_ethernet_udp(frame) {
            Ok(udp) => udp,
            Err(e) if e.is_foreign() => {
                c.foreign += 1;
                return None;
            }
            Err(_) => {
                c.malformed += 1;
                return None;
            }
        };
        let line = match self.filter.line(&udp) {
            Ok(line) => line,
            Err(NotAFeed::Unsubscribed) => {
                c.foreign += 1;
                return None;
            }
            Err(NotAFeed::WrongSource) => {
                c.wrong_source += 1;
                return None;
            }
        };
        if self.checksums == Checksums::Verify {
            if !udp.ipv4_checksum_ok() {
                c.bad_ip_checksum += 1;
                return None;
            }
            match udp.udp_checksum() {
                UdpChecksum::Valid => {}
                UdpChecksum::Absent => c.udp_checksum_absent += 1,
                UdpChecksum::Invalid => {
                    c.bad_udp_checksum += 1;
                    return None;
                }
            }
        }
        Some((line, udp.payload))
    }

    /// Admits `feed`'s frames from now on, on a vacant line or a new one
    /// (within the room made at construction: no allocation).
    pub fn add_feed(&mut self, feed: Feed) -> Result<usize, FeedChangeError> {
        let feeds = &mut self.filter.feeds;
        if let Some(line) = feeds
            .iter()
            .position(|f| (f.group, f.port) == (feed.group, feed.port))
        {
            return Err(FeedChangeError::AlreadySubscribed { line });
        }
        if let Some(line) = feeds.iter().position(|f| *f == VACANT) {
            feeds[line] = feed;
            return Ok(line);
        }
        if feeds.len() >= MAX_LINES {
            return Err(FeedChangeError::Full);
        }
        feeds.push(feed);
        Ok(feeds.len() - 1)
    }

    /// Refuses the frames of the feed to `group:port` from now on (counted
    /// as not subscribed); its line is left vacant for the next feed added.
    pub fn remove_feed(&mut self, group: Ipv4Addr, port: u16) -> Result<usize, FeedChangeError> {
        let feeds = &mut self.filter.feeds;
        let line = feeds
            .iter()
            .position(|f| (f.group, f.port) == (group, port) && *f != VACANT)
            .ok_or(FeedChangeError::NotSubscribed)?;
        feeds[line] = VACANT;
        Ok(line)
    }

    /// What was refused so far (and taken without a checksum).
    pub fn counters(&self) -> SourceCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use ticklane_capture::feed::Feed;
    use ticklane_protocols::wire::{UdpFrameSpec, write_udp_frame};

    const SOURCE: [u8; 4] = [198, 18, 0, 1];
    const GROUP: [u8; 4] = [239, 1, 1, 1];

    fn frame(source: [u8; 4], port: u16) -> Vec<u8> {
        let spec = UdpFrameSpec::multicast([2; 6], source, GROUP, port);
        let mut buf = vec![0u8; 128];
        let n = write_udp_frame(&mut buf, &spec, b"a MoldUDP64 packet").unwrap();
        buf.truncate(n);
        buf
    }

    fn admission(checksums: Checksums) -> Admission {
        let feed = |port, source: Option<[u8; 4]>| Feed {
            group: Ipv4Addr::from(GROUP),
            port,
            source: source.map(Ipv4Addr::from),
        };
        let feeds = vec![feed(100, None), feed(200, Some(SOURCE))];
        Admission::new(FeedFilter { feeds }, checksums)
    }

    #[test]
    fn each_refusal_is_counted_by_kind() {
        let mut a = admission(Checksums::Verify);
        let good = frame(SOURCE, 200);
        assert_eq!(a.admit(&good), Some((1, &b"a MoldUDP64 packet"[..])));
        assert_eq!(a.admit(&frame([198, 18, 0, 9], 100)).map(|x| x.0), Some(0));

        let mut price = good.clone();
        *price.last_mut().unwrap() ^= 1;
        assert_eq!(a.admit(&price), None);
        let mut header = good.clone();
        header[14 + 8] -= 1; // TTL, not covered by the UDP checksum
        assert_eq!(a.admit(&header), None);
        assert_eq!(a.admit(&frame([198, 18, 0, 9], 200)), None);
        assert_eq!(a.admit(&frame(SOURCE, 300)), None);
        assert_eq!(a.admit(&good[..good.len() - 1]), None);
        let mut none = good.clone();
        none[40..42].fill(0);
        assert!(a.admit(&none).is_some(), "no checksum is allowed over IPv4");

        let c = a.counters();
        assert_eq!(c.bad_udp_checksum, 1);
        assert_eq!(c.bad_ip_checksum, 1);
        assert_eq!(c.wrong_source, 1);
        assert_eq!(c.foreign, 1);
        assert_eq!(c.malformed, 1);
        assert_eq!(c.udp_checksum_absent, 1);
        let r = c.rejected();
        assert_eq!(r.total(), 5);
        assert_eq!((r.ip_checksum, r.udp_checksum, r.source), (1, 1, 1));
    }

    #[test]
    fn feeds_come_and_go_on_stable_lines() {
        let mut a = admission(Checksums::Verify);
        let third = Feed {
            group: Ipv4Addr::from(GROUP),
            port: 300,
            source: None,
        };
        assert_eq!(a.admit(&frame(SOURCE, 300)), None, "not a feed yet");
        assert_eq!(a.add_feed(third), Ok(2));
        assert_eq!(a.admit(&frame(SOURCE, 300)).map(|x| x.0), Some(2));
        assert_eq!(
            a.add_feed(third),
            Err(FeedChangeError::AlreadySubscribed { line: 2 })
        );
        assert_eq!(a.remove_feed(Ipv4Addr::from(GROUP), 100), Ok(0));
        assert_eq!(a.admit(&frame(SOURCE, 100)), None, "removed");
        assert_eq!(
            a.admit(&frame(SOURCE, 200)).map(|x| x.0),
            Some(1),
            "the others keep their lines"
        );
        assert_eq!(
            a.remove_feed(Ipv4Addr::from(GROUP), 100),
            Err(FeedChangeError::NotSubscribed)
        );
        assert_eq!(
            a.remove_feed(Ipv4Addr::UNSPECIFIED, 0),
            Err(FeedChangeError::NotSubscribed),
            "a vacant line is no feed"
        );
        let port = |p| Feed { port: p, ..third };
        assert_eq!(a.add_feed(port(400)), Ok(0), "the vacant line is reused");
        for (i, p) in (500..).take(MAX_LINES - 3).enumerate() {
            assert_eq!(a.add_feed(port(p)), Ok(3 + i));
        }
        assert_eq!(a.add_feed(port(999)), Err(FeedChangeError::Full));
        assert_eq!(a.counters().foreign, 2);
    }

    #[test]
    fn a_trusted_nic_spares_the_checksums_not_the_rest() {
        let mut a = admission(Checksums::TrustNic);
        let mut price = frame(SOURCE, 200);
        *price.last_mut().unwrap() ^= 1;
        assert!(a.admit(&price).is_some());
        assert_eq!(a.admit(&frame([198, 18, 0, 9], 200)), None);
        let c = a.counters();
        assert_eq!((c.bad_udp_checksum, c.wrong_source), (0, 1));
    }
}

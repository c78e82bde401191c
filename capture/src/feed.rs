//! From capture records to sequenced ITCH messages: frames are walked through
//! Ethernet/IPv4/UDP and MoldUDP64, BinaryFILE messages are numbered from 1.
//! Malformed input is reported to the sink with its location and skipped;
//! nothing here panics or stops on a bad packet.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use ticklane_protocols::itch::{self, ItchError, MESSAGE_TYPES, MessageRef};
use ticklane_protocols::moldudp64::{MoldError, Packet, PacketKind, Session};
use ticklane_protocols::wire::{self, FrameError, UdpFrame};

use crate::{Frame, Link, Record};

/// Where in the input a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// What `number` counts.
    pub unit: Unit,
    /// 1-based packet number (pcap) or message number (BinaryFILE).
    pub number: u64,
    /// Byte offset of the record in the file.
    pub offset: u64,
}

impl Location {
    /// A BinaryFILE message.
    pub fn message(number: u64, offset: u64) -> Self {
        Self {
            unit: Unit::Message,
            number,
            offset,
        }
    }

    /// A captured frame.
    pub fn frame(frame: &Frame<'_>) -> Self {
        Self {
            unit: Unit::Packet,
            number: frame.number,
            offset: frame.offset,
        }
    }
}

/// What a [`Location`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Captured packets.
    Packet,
    /// BinaryFILE messages.
    Message,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Packet => "packet",
            Self::Message => "message",
        })
    }
}

/// What was wrong with a packet or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The frame is not a well-formed UDP datagram.
    Frame(FrameError),
    /// The UDP payload is not a well-formed MoldUDP64 packet.
    Mold(MoldError),
    /// One message is not a valid ITCH 5.0 message.
    Itch {
        /// Its sequence number.
        seq: u64,
        /// Why.
        error: ItchError,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => e.fmt(f),
            Self::Mold(e) => e.fmt(f),
            Self::Itch { seq, error } => write!(f, "message seq {seq}: {error}"),
        }
    }
}

/// Receives what [`FeedDecoder`] finds.
pub trait FeedSink {
    /// A valid message with its session and sequence number.
    fn message(&mut self, session: &Session, seq: u64, message: MessageRef<'_>);
    /// A valid MoldUDP64 packet, before its messages are delivered.
    fn packet(&mut self, packet: &Packet<&[u8]>) {
        let _ = packet;
    }
    /// Something malformed that was skipped.
    fn problem(&mut self, at: Location, problem: Problem);
}

/// One feed line: the group and port its datagrams go to, and the one
/// address they must come from, when it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// Destination multicast group.
    pub group: Ipv4Addr,
    /// Destination UDP port.
    pub port: u16,
    /// Source address the feed is sent from (`GROUP:PORT@SOURCE`); `None`: any.
    pub source: Option<Ipv4Addr>,
}

/// Why a datagram is not one of a filter's feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAFeed {
    /// No feed goes to its group and port.
    Unsubscribed,
    /// It goes to a feed's group and port, but not from the feed's source.
    WrongSource,
}

/// Optional filter on the frames that count as the feed.
#[derive(Debug, Clone, Default)]
pub struct FeedFilter {
    /// The feeds to keep, line = position; empty keeps every UDP frame.
    pub feeds: Vec<Feed>,
}

impl FeedFilter {
    /// Which of the feeds (A/B line index) a datagram belongs to.
    #[inline]
    pub fn line(&self, udp: &UdpFrame<'_>) -> Result<usize, NotAFeed> {
        let (group, source) = (Ipv4Addr::from(udp.destination), Ipv4Addr::from(udp.source));
        let (line, feed) = self
            .feeds
            .iter()
            .enumerate()
            .find(|(_, f)| f.group == group && f.port == udp.destination_port)
            .ok_or(NotAFeed::Unsubscribed)?;
        match feed.source {
            Some(s) if s != source => Err(NotAFeed::WrongSource),
            _ => Ok(line),
        }
    }
}

/// Counts of what was decoded and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeCounts {
    /// Records read (frames or BinaryFILE messages).
    pub records: u64,
    /// Valid MoldUDP64 packets.
    pub packets: u64,
    /// Valid messages delivered.
    pub messages: u64,
    /// Frames that were valid but not UDP over IPv4, or not a filtered feed
    /// (another group or port, or another source than the feed's).
    pub foreign: u64,
    /// Packets skipped as malformed.
    pub bad_packets: u64,
    /// Messages skipped as malformed inside valid packets.
    pub bad_messages: u64,
}

impl std::ops::AddAssign for DecodeCounts {
    fn add_assign(&mut self, c: Self) {
        self.records += c.records;
        self.packets += c.packets;
        self.messages += c.messages;
        self.foreign += c.foreign;
        self.bad_packets += c.bad_packets;
        self.bad_messages += c.bad_messages;
    }
}

/// Walks records into messages.
#[derive(Debug, Default)]
pub struct FeedDecoder {
    filter: FeedFilter,
    counts: DecodeCounts,
}

/// The session BinaryFILE messages are reported under (no name).
pub const BINARYFILE_SESSION: Session = Session([b' '; 10]);

impl FeedDecoder {
    /// A decoder keeping only the frames `filter` selects.
    pub fn new(filter: FeedFilter) -> Self {
        Self {
            filter,
            counts: DecodeCounts::default(),
        }
    }

    /// What was seen so far.
    pub fn counts(&self) -> DecodeCounts {
        self.counts
    }

    /// Decodes one record into `sink`.
    pub fn record(&mut self, record: Record<'_>, sink: &mut impl FeedSink) {
        self.counts.records += 1;
        match record {
            Record::Message {
                number,
                offset,
                data,
            } => {
                let at = Location::message(number, offset);
                self.message(at, &BINARYFILE_SESSION, number, data, sink);
            }
            Record::Frame(frame) => {
                let at = Location::frame(&frame);
                if let Some(udp) = self.udp(&frame, sink) {
                    self.payload(at, udp.payload, sink);
                }
            }
        }
    }

    /// Walks a frame down to its UDP datagram, if it is one of the feed's;
    /// counts and reports what is not.
    pub fn udp<'a>(&mut self, frame: &Frame<'a>, sink: &mut impl FeedSink) -> Option<UdpFrame<'a>> {
        let parsed = match frame.link {
            Link::Ethernet => wire::parse_ethernet_udp(frame.data),
            Link::RawIpv4 => wire::parse_ipv4_udp(frame.data),
        };
        let udp = match parsed {
            Ok(udp) => udp,
            Err(e) if e.is_foreign() => {
                self.counts.foreign += 1;
                return None;
            }
            Err(e) => {
                self.counts.bad_packets += 1;
                let at = Location::frame(frame);
                sink.problem(at, Problem::Frame(e));
                return None;
            }
        };
        if !self.filter.feeds.is_empty() && self.filter.line(&udp).is_err() {
            self.counts.foreign += 1;
            return None;
        }
        Some(udp)
    }

    /// Checks one MoldUDP64 packet; counts and reports it when malformed.
    pub fn packet<'a>(
        &mut self,
        at: Location,
        payload: &'a [u8],
        sink: &mut impl FeedSink,
    ) -> Option<Packet<&'a [u8]>> {
        match Packet::new_checked(payload) {
            Ok(p) => {
                self.counts.packets += 1;
                Some(p)
            }
            Err(e) => {
                self.counts.bad_packets += 1;
                sink.problem(at, Problem::Mold(e));
                None
            }
        }
    }

    /// Decodes one MoldUDP64 packet (a UDP payload) into `sink`.
    pub fn payload(&mut self, at: Location, payload: &[u8], sink: &mut impl FeedSink) {
        let Some(packet) = self.packet(at, payload, sink) else {
            return;
        };
        sink.packet(&packet);
        let session = packet.session();
        for (seq, bytes) in packet.messages() {
            self.message(at, &session, seq, bytes, sink);
        }
    }

    /// Parses one sequenced message into `sink`; counts and reports it when
    /// malformed.
    pub fn message(
        &mut self,
        at: Location,
        session: &Session,
        seq: u64,
        bytes: &[u8],
        sink: &mut impl FeedSink,
    ) {
        match itch::parse(bytes) {
            Ok(m) => {
                self.counts.messages += 1;
                sink.message(session, seq, m);
            }
            Err(error) => {
                self.counts.bad_messages += 1;
                sink.problem(at, Problem::Itch { seq, error });
            }
        }
    }
}

/// Most gaps the report lists one by one.
pub const MAX_LISTED_GAPS: usize = 32;

/// Most open gaps a session summary tracks; past that, new gaps are only
/// counted (memory stays bounded on a hopeless feed).
pub const MAX_TRACKED_GAPS: usize = 65_536;

/// What a summary knows of one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSummary {
    /// Packets with messages.
    pub packets: u64,
    /// Heartbeats.
    pub heartbeats: u64,
    /// End-of-session packets.
    pub end_of_session: u64,
    /// Messages received, duplicates included.
    pub received: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Packets that arrived after a later one and filled (part of) a hole.
    pub late_packets: u64,
    /// Lowest sequence number seen.
    pub first_seq: Option<u64>,
    /// Highest sequence number seen plus one.
    pub next_seq: u64,
    /// Holes still open: first missing sequence number → last missing.
    pub gaps: BTreeMap<u64, u64>,
    /// Gaps that could not be tracked (past [`MAX_TRACKED_GAPS`]).
    pub untracked_gaps: u64,
}

impl SessionSummary {
    /// Messages still missing in the open gaps.
    pub fn missing(&self) -> u64 {
        self.gaps
            .iter()
            .fold(0u64, |n, (from, to)| n.saturating_add(to - from + 1))
    }

    /// Takes `[from, to)` out of the open gaps; returns how many of those
    /// sequence numbers were in a gap (the rest were duplicates).
    fn fill(&mut self, from: u64, to: u64) -> u64 {
        let mut filled = 0;
        let overlapping: Vec<(u64, u64)> = self
            .gaps
            .range(..to)
            .rev()
            .take_while(|(_, last)| **last >= from)
            .map(|(a, b)| (*a, *b))
            .collect();
        for (a, b) in overlapping {
            self.gaps.remove(&a);
            let (lo, hi) = (a.max(from), b.min(to - 1));
            filled += hi - lo + 1;
            if a < lo {
                self.gaps.insert(a, lo - 1);
            }
            if hi < b {
                self.gaps.insert(hi + 1, b);
            }
        }
        filled
    }
}

/// Per-type counts and per-session sequence accounting of a feed.
#[derive(Debug, Clone, Default)]
pub struct FeedSummary {
    /// Messages by type, indexed like [`MESSAGE_TYPES`].
    pub by_type: [u64; MESSAGE_TYPES.len()],
    /// Per session, by name.
    pub sessions: BTreeMap<Session, SessionSummary>,
}

impl FeedSummary {
    /// Accounts one packet: opens a gap when it skips ahead, fills gaps (or
    /// counts duplicates) when it comes late.
    pub fn packet(&mut self, packet: &Packet<&[u8]>) {
        let s = self.sessions.entry(packet.session()).or_default();
        let seq = packet.sequence_number();
        let end = packet.next_sequence_number();
        match packet.kind() {
            PacketKind::Heartbeat => s.heartbeats += 1,
            PacketKind::EndOfSession => s.end_of_session += 1,
            PacketKind::Messages => s.packets += 1,
        }
        let first = *s.first_seq.get_or_insert(seq);
        if s.next_seq < first {
            s.next_seq = first;
        }
        s.received += end - seq;
        if seq > s.next_seq {
            if s.gaps.len() < MAX_TRACKED_GAPS {
                s.gaps.insert(s.next_seq, seq - 1);
            } else {
                s.untracked_gaps += 1;
            }
        } else if seq < s.next_seq && end > seq {
            let overlap_end = end.min(s.next_seq);
            let filled = s.fill(seq, overlap_end);
            s.duplicates += (overlap_end - seq) - filled;
            if filled > 0 {
                s.late_packets += 1;
            }
        }
        s.next_seq = s.next_seq.max(end);
    }

    /// Accounts one message's type.
    pub fn message(&mut self, message: &MessageRef<'_>) {
        if let Some(i) = itch::type_index(message.header().message_type) {
            self.by_type[i] += 1;
        }
    }

    /// The human-readable report `ticklane decode --summary` prints.
    pub fn render(&self, counts: &DecodeCounts) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let total: u64 = self.by_type.iter().sum();
        let _ = writeln!(out, "messages: {total}");
        let _ = writeln!(out, "packets: {}", counts.packets);
        if counts.foreign > 0 {
            let _ = writeln!(out, "other frames skipped: {}", counts.foreign);
        }
        if counts.bad_packets + counts.bad_messages > 0 {
            let _ = writeln!(
                out,
                "malformed: {} packets, {} messages (skipped)",
                counts.bad_packets, counts.bad_messages
            );
        }
        let _ = writeln!(out, "by type:");
        for (t, n) in MESSAGE_TYPES.iter().zip(self.by_type) {
            if n > 0 {
                let share = 100.0 * n as f64 / total.max(1) as f64;
                let _ = writeln!(
                    out,
                    "  {} {:<26} {n:>12} {share:6.2}%",
                    char::from(t.tag),
                    t.name
                );
            }
        }
        for (session, s) in &self.sessions {
            let name = String::from_utf8_lossy(session.trimmed());
            let first = s.first_seq.unwrap_or(0);
            let missing = s.missing();
            let _ = writeln!(out, "session \"{name}\":");
            let _ = writeln!(
                out,
                "  seq {first}..{}: {} messages received in {} packets, {} heartbeats{}",
                s.next_seq.saturating_sub(1),
                s.received,
                s.packets,
                s.heartbeats,
                if s.end_of_session > 0 { ", ended" } else { "" }
            );
            if s.duplicates + s.late_packets > 0 {
                let _ = writeln!(
                    out,
                    "  duplicates: {} messages; late packets that filled a hole: {}",
                    s.duplicates, s.late_packets
                );
            }
            if s.gaps.is_empty() && s.untracked_gaps == 0 {
                let _ = writeln!(out, "  gaps: none");
                continue;
            }
            let _ = writeln!(out, "  gaps: {} ({missing} messages missing)", s.gaps.len());
            for (from, to) in s.gaps.iter().take(MAX_LISTED_GAPS) {
                let _ = writeln!(out, "    {from}..{to} ({} messages)", to - from + 1);
            }
            if s.gaps.len() > MAX_LISTED_GAPS {
                let _ = writeln!(out, "    … {} more", s.gaps.len() - MAX_LISTED_GAPS);
            }
            if s.untracked_gaps > 0 {
                let _ = writeln!(out, "  and {} more gaps not tracked", s.untracked_gaps);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticklane_protocols::wire::{UdpFrameSpec, write_udp_frame};

    fn frame(source: [u8; 4], group: [u8; 4], port: u16) -> Vec<u8> {
        let spec = UdpFrameSpec::multicast([2; 6], source, group, port);
        let mut buf = vec![0u8; 64];
        let n = write_udp_frame(&mut buf, &spec, b"x").unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn a_feed_line_is_found_by_group_port_and_source() {
        let filter = FeedFilter {
            feeds: vec![
                Feed {
                    group: Ipv4Addr::new(239, 1, 1, 1),
                    port: 100,
                    source: None,
                },
                Feed {
                    group: Ipv4Addr::new(239, 1, 1, 2),
                    port: 100,
                    source: Some(Ipv4Addr::new(198, 18, 0, 1)),
                },
            ],
        };
        let line = |src, group, port| {
            let f = frame(src, group, port);
            filter.line(&wire::parse_ethernet_udp(&f).unwrap())
        };
        assert_eq!(line([198, 18, 0, 9], [239, 1, 1, 1], 100), Ok(0));
        assert_eq!(line([198, 18, 0, 1], [239, 1, 1, 2], 100), Ok(1));
        assert_eq!(
            line([198, 18, 0, 9], [239, 1, 1, 2], 100),
            Err(NotAFeed::WrongSource)
        );
        assert_eq!(
            line([198, 18, 0, 1], [239, 1, 1, 2], 101),
            Err(NotAFeed::Unsubscribed)
        );
    }
}

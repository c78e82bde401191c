//! `ticklane gen`: the synthetic market packed into MoldUDP64 packets inside
//! Ethernet/IPv4/UDP multicast frames (pcap, pcapng), or written as a
//! BinaryFILE; optionally a damaged copy of the packet stream (drops,
//! duplicates, reordering) for the session layer's tests. Streams with fixed
//! buffers: memory does not grow with the feed's length.

use std::io::Write;
use std::path::PathBuf;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use ticklane_protocols::itch::{self, MESSAGE_TYPES};
use ticklane_protocols::moldudp64::{self, END_OF_SESSION, PacketBuilder, Session};
use ticklane_protocols::wire::{self, UdpFrameSpec};

use crate::market::{MAX_MESSAGE_LEN, Market, MarketConfig};
use ticklane_capture::{CaptureError, CaptureWriter, Format, OutputFile};

/// Midnight UTC of 2026-11-20, the trading day generated feeds are stamped
/// with (ITCH timestamps are nanoseconds since midnight).
pub const TRADING_DAY_EPOCH_NS: u64 = 1_795_651_200 * 1_000_000_000;

/// How to packetise and where to write.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// MoldUDP64 session name.
    pub session: Session,
    /// Sequence number of the first message.
    pub first_seq: u64,
    /// Largest UDP payload (MoldUDP64 header included).
    pub max_payload: usize,
    /// Most messages in one packet.
    pub max_messages: u16,
    /// A heartbeat after every N packets (0: none).
    pub heartbeat_every: u64,
    /// Multicast group and port of the frames.
    pub group: [u8; 4],
    /// UDP port.
    pub port: u16,
    /// Source address of the frames.
    pub source: [u8; 4],
    /// Where the clean feed goes.
    pub output: PathBuf,
    /// Its format.
    pub format: Format,
    /// Optional damaged copy of the packet stream.
    pub damage: Option<Damage>,
    /// Where to write the expected final books (canonical book JSON Lines).
    pub expect_book: Option<PathBuf>,
}

/// Damage applied to a copy of the packet stream.
#[derive(Debug, Clone)]
pub struct Damage {
    /// Where the damaged copy goes (same format as the clean feed).
    pub output: PathBuf,
    /// Seed of the drop, duplicate and reorder choices: the same seed
    /// damages the same packets, another seed others (two lines of one
    /// feed, each with its own losses, differ here).
    pub seed: u64,
    /// Probability that a packet is dropped.
    pub drop: f64,
    /// Probability that a packet is sent twice.
    pub dup: f64,
    /// Probability that a packet swaps places with the next one.
    pub reorder: f64,
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenReport {
    /// Messages written.
    pub messages: u64,
    /// Message packets written (heartbeats and end of session not counted).
    pub packets: u64,
    /// Heartbeats written.
    pub heartbeats: u64,
    /// Messages by type, indexed like [`MESSAGE_TYPES`].
    pub by_type: [u64; MESSAGE_TYPES.len()],
    /// Sequence number after the last message.
    pub next_seq: u64,
    /// Packets dropped from the damaged copy.
    pub dropped: u64,
    /// Packets duplicated in the damaged copy.
    pub duplicated: u64,
    /// Packets moved behind their successor in the damaged copy.
    pub reordered: u64,
}

impl GenReport {
    /// The report as JSON (for scripts and tests).
    pub fn to_json(&self) -> serde_json::Value {
        let by_type: serde_json::Map<String, serde_json::Value> = MESSAGE_TYPES
            .iter()
            .zip(self.by_type)
            .map(|(t, n)| (char::from(t.tag).to_string(), n.into()))
            .collect();
        serde_json::json!({
            "messages": self.messages,
            "packets": self.packets,
            "heartbeats": self.heartbeats,
            "next_seq": self.next_seq,
            "by_type": by_type,
            "damage": {"dropped": self.dropped, "duplicated": self.duplicated, "reordered": self.reordered},
        })
    }
}

/// The damaged copy's writer: drops, duplicates and holds packets back.
struct Damager {
    cfg: Damage,
    writer: CaptureWriter,
    rng: Pcg64Mcg,
    held: Option<(u64, Vec<u8>)>,
}

impl Damager {
    fn create(cfg: &Damage, format: Format) -> Result<Self, CaptureError> {
        Ok(Self {
            writer: CaptureWriter::create(&cfg.output, format)?,
            // Salted: the damage draws from another stream than a market
            // generated with the same seed.
            rng: Pcg64Mcg::seed_from_u64(cfg.seed ^ 0x005e_edda_3a9e),
            held: None,
            cfg: cfg.clone(),
        })
    }

    fn frame(&mut self, ts: u64, frame: &[u8], report: &mut GenReport) -> Result<(), CaptureError> {
        if self.rng.random_bool(self.cfg.drop) {
            report.dropped += 1;
            return Ok(());
        }
        let copies = if self.rng.random_bool(self.cfg.dup) {
            report.duplicated += 1;
            2
        } else {
            1
        };
        if self.held.is_none() && self.rng.random_bool(self.cfg.reorder) {
            report.reordered += 1;
            self.held = Some((ts, frame.to_vec()));
            return Ok(());
        }
        for _ in 0..copies {
            self.writer.write_frame(ts, frame)?;
        }
        if let Some((ts, held)) = self.held.take() {
            self.writer.write_frame(ts, &held)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), CaptureError> {
        if let Some((ts, held)) = self.held.take() {
            self.writer.write_frame(ts, &held)?;
        }
        self.writer.finish()
    }
}

/// Frames packets and writes them to the clean and the damaged output.
struct Framer {
    spec: UdpFrameSpec,
    frame: Vec<u8>,
    clean: CaptureWriter,
    damaged: Option<Damager>,
}

impl Framer {
    fn send(
        &mut self,
        ts: u64,
        payload: &[u8],
        report: &mut GenReport,
    ) -> Result<(), CaptureError> {
        let n = wire::write_udp_frame(&mut self.frame, &self.spec, payload)
            .expect("the frame buffer holds the largest payload"); // sized in `generate`
        self.clean.write_frame(ts, &self.frame[..n])?;
        if let Some(d) = &mut self.damaged {
            d.frame(ts, &self.frame[..n], report)?;
        }
        Ok(())
    }
}

/// Why a feed could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// Writing failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The options do not fit together.
    #[error("{0}")]
    Config(String),
    /// The sequence numbers would pass 2^64 - 1: MoldUDP64 numbers do not
    /// wrap (the end of session carries the number after the last message,
    /// so that one must fit too).
    #[error(
        "--first-seq {first_seq} with --messages {messages} overflows the 64-bit MoldUDP64 \
         sequence number (numbers do not wrap): use --first-seq {} or less, or fewer --messages",
        u64::MAX - messages
    )]
    SequenceOverflow {
        /// The first sequence number asked for.
        first_seq: u64,
        /// The messages asked for.
        messages: u64,
    },
}

/// Refuses what cannot be generated, before any file is created.
fn check(market: &MarketConfig, feed: &FeedConfig) -> Result<(), GenError> {
    if feed.first_seq == 0 {
        return Err(GenError::Config(
            "--first-seq 0: MoldUDP64 sequence numbers start at 1".into(),
        ));
    }
    if feed.first_seq.checked_add(market.messages).is_none() {
        return Err(GenError::SequenceOverflow {
            first_seq: feed.first_seq,
            messages: market.messages,
        });
    }
    if feed.format == Format::Binaryfile {
        if feed.damage.is_some() {
            return Err(GenError::Config(
                "a BinaryFILE has no packets to damage: write pcap or pcapng to use --drop/--dup/--reorder"
                    .into(),
            ));
        }
    } else if feed.max_payload < moldudp64::HEADER_LEN + 2 + MAX_MESSAGE_LEN
        || feed.max_payload > 65_000
    {
        return Err(GenError::Config(format!(
            "--max-payload {} must be between {} and 65000 bytes",
            feed.max_payload,
            moldudp64::HEADER_LEN + 2 + MAX_MESSAGE_LEN
        )));
    }
    Ok(())
}

/// Generates the feed; `progress` is called with the number of messages done
/// every few thousand messages.
///
/// Options are checked and every output is opened before the first message:
/// what cannot work fails at once, and creates no file. The outputs appear
/// only once complete; a failure on the way leaves none of them behind.
pub fn generate(
    market: MarketConfig,
    feed: &FeedConfig,
    mut progress: impl FnMut(u64),
) -> Result<GenReport, GenError> {
    check(&market, feed)?;
    let clean = CaptureWriter::create(&feed.output, feed.format)?;
    let books = feed
        .expect_book
        .as_deref()
        .map(OutputFile::create)
        .transpose()?;
    let mut market = Market::new(market);
    let report = if feed.format == Format::Binaryfile {
        write_messages(&mut market, feed, clean, &mut progress)?
    } else {
        write_packets(&mut market, feed, clean, &mut progress)?
    };
    if let Some(mut out) = books {
        out.write_all(&market.expected_books())
            .map_err(|source| CaptureError::Io {
                path: out.path().to_owned(),
                source,
            })?;
        out.commit()?;
    }
    Ok(report)
}

/// A BinaryFILE: the messages, no packets.
fn write_messages(
    market: &mut Market,
    feed: &FeedConfig,
    mut clean: CaptureWriter,
    progress: &mut impl FnMut(u64),
) -> Result<GenReport, GenError> {
    let mut report = GenReport::default();
    let mut message = [0u8; MAX_MESSAGE_LEN];
    while let Some(n) = market.next_message(&mut message) {
        clean.write_message(&message[..n])?;
        count(&mut report, &message[..n], progress);
    }
    report.next_seq = feed.first_seq + report.messages;
    clean.finish()?;
    Ok(report)
}

/// MoldUDP64 packets in frames, to the clean feed and the damaged copy.
fn write_packets(
    market: &mut Market,
    feed: &FeedConfig,
    clean: CaptureWriter,
    progress: &mut impl FnMut(u64),
) -> Result<GenReport, GenError> {
    let mut report = GenReport::default();
    let mut message = [0u8; MAX_MESSAGE_LEN];
    let mut framer = Framer {
        spec: UdpFrameSpec::multicast(
            [0x02, 0x00, 0xc6, 0x12, 0x00, 0x01],
            feed.source,
            feed.group,
            feed.port,
        ),
        frame: vec![0u8; feed.max_payload + wire::frame::FRAME_OVERHEAD],
        clean,
        damaged: feed
            .damage
            .as_ref()
            .map(|d| Damager::create(d, feed.format))
            .transpose()?,
    };
    let mut payload = vec![0u8; feed.max_payload];
    let mut seq = feed.first_seq;
    let mut last_ts = TRADING_DAY_EPOCH_NS;
    let mut pending = market.next_message(&mut message);
    while pending.is_some() {
        let mut builder = PacketBuilder::new(&mut payload, feed.session, seq)
            .expect("payload buffer holds a header"); // checked against max_payload in `check`
        while let Some(n) = pending {
            if builder.count() >= feed.max_messages || builder.push(&message[..n]).is_err() {
                break;
            }
            last_ts = TRADING_DAY_EPOCH_NS
                + itch::parse(&message[..n]).map_or(0, |m| m.header().timestamp());
            count(&mut report, &message[..n], progress);
            pending = market.next_message(&mut message);
        }
        // No overflow: at most first_seq + messages, checked in `check`.
        seq += u64::from(builder.count());
        framer.send(last_ts, builder.finish(), &mut report)?;
        report.packets += 1;
        if feed.heartbeat_every > 0 && report.packets.is_multiple_of(feed.heartbeat_every) {
            framer.send(
                last_ts,
                &moldudp64::header(feed.session, seq, 0),
                &mut report,
            )?;
            report.heartbeats += 1;
        }
    }
    // The end of session goes out three times, as feeds repeat it: a
    // receiver that lost the last packets still learns where the session ended.
    let end = moldudp64::header(feed.session, seq, END_OF_SESSION);
    for _ in 0..3 {
        framer.send(last_ts, &end, &mut report)?;
    }
    report.next_seq = seq;
    framer.clean.finish()?;
    if let Some(d) = framer.damaged {
        d.finish()?;
    }
    Ok(report)
}

fn count(report: &mut GenReport, message: &[u8], progress: &mut impl FnMut(u64)) {
    if let Some(i) = message.first().and_then(|t| itch::type_index(*t)) {
        report.by_type[i] += 1;
    }
    report.messages += 1;
    if report.messages.is_multiple_of(65_536) {
        progress(report.messages);
    }
}

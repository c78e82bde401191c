//! `ticklane decode`.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ticklane_capture::canonical as json;
use ticklane_capture::feed::{DecodeCounts, FeedDecoder, FeedSink, FeedSummary, Location, Problem};
use ticklane_capture::{self as capture, Format, OutputFile};
use ticklane_protocols::itch::MessageRef;
use ticklane_protocols::moldudp64::{Packet, Session};

use super::GroupPort;

/// Decode ITCH 5.0 captures to canonical JSON Lines (one object per message).
///
/// Input formats are detected: pcap and pcapng (Ethernet or raw IPv4, UDP
/// carrying MoldUDP64) and NASDAQ BinaryFILE. Each message prints as in
/// docs/formats.md: session, seq, type, every field in wire order, raw
/// integers, trimmed text. A malformed packet is reported on stderr with its
/// packet number and byte offset and skipped; an unreadable or truncated file
/// is an error (exit 1) after what could be decoded was printed.
#[derive(Debug, clap::Args)]
pub(crate) struct DecodeArgs {
    /// Capture files, decoded one after the other.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print per-type counts, sessions, sequence ranges and gaps instead of the messages.
    #[arg(long)]
    summary: bool,
    /// With --summary: print it as one JSON object.
    #[arg(long, requires = "summary")]
    json: bool,
    /// Only decode frames sent to GROUP:PORT, from SOURCE when given
    /// (repeatable); default: every UDP frame.
    #[arg(long = "feed", value_name = "GROUP:PORT[@SOURCE]")]
    feeds: Vec<GroupPort>,
    /// Write the JSON Lines to this file instead of stdout (only if every
    /// file decodes: a failed decode leaves no file).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// How many malformed packets are reported one by one per file.
const MAX_REPORTED: u64 = 20;

struct Sink<'a> {
    path: &'a Path,
    out: Option<&'a mut dyn Write>,
    line: Vec<u8>,
    summary: &'a mut FeedSummary,
    reported: u64,
    write_error: Option<io::Error>,
}

impl FeedSink for Sink<'_> {
    fn message(&mut self, session: &Session, seq: u64, message: MessageRef<'_>) {
        self.summary.message(&message);
        let Some(out) = &mut self.out else { return };
        if self.write_error.is_some() {
            return;
        }
        self.line.clear();
        json::write_message(&mut self.line, session.trimmed(), seq, &message);
        if let Err(e) = out.write_all(&self.line) {
            self.write_error = Some(e);
        }
    }

    fn packet(&mut self, packet: &Packet<&[u8]>) {
        self.summary.packet(packet);
    }

    fn problem(&mut self, at: Location, problem: Problem) {
        self.reported += 1;
        if self.reported <= MAX_REPORTED {
            eprintln!(
                "ticklane: {}: {} {} (byte offset {}): {problem}; skipped",
                self.path.display(),
                at.unit,
                at.number,
                at.offset
            );
        } else if self.reported == MAX_REPORTED + 1 {
            eprintln!(
                "ticklane: {}: more malformed packets; only counting from now on",
                self.path.display()
            );
        }
    }
}

pub(crate) fn run(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut file = args.output.as_deref().map(OutputFile::create).transpose()?;
    let mut out: Box<dyn Write + '_> = match &mut file {
        Some(file) => Box::new(BufWriter::with_capacity(1 << 20, file)),
        None => Box::new(BufWriter::with_capacity(1 << 20, stdout.lock())),
    };
    let filter = super::feed_filter(&args.feeds)?;
    let mut summary = FeedSummary::default();
    let mut totals = DecodeCounts::default();
    let mut failure = None;
    for path in &args.files {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let bar = super::progress_bar(size, "decoding");
        let mut decoder = FeedDecoder::new(filter.clone());
        let mut sink = Sink {
            path,
            out: if args.summary { None } else { Some(&mut *out) },
            line: Vec::with_capacity(512),
            summary: &mut summary,
            reported: 0,
            write_error: None,
        };
        let mut format = None;
        let result = capture::read(path, |record| {
            if decoder.counts().records.is_multiple_of(4096) {
                let offset = match record {
                    capture::Record::Frame(f) => f.offset,
                    capture::Record::Message { offset, .. } => offset,
                };
                bar.set_position(offset);
            }
            decoder.record(record, &mut sink);
        })
        .map(|f| format = Some(f));
        bar.finish_and_clear();
        if let Some(e) = sink.write_error.take() {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e).context("writing the decoded messages");
        }
        let counts = decoder.counts();
        totals += counts;
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
        if let Some(problem) = diagnose(format, &counts, !filter.feeds.is_empty()) {
            failure = Some(capture::CaptureError::Corrupt {
                path: path.clone(),
                offset: 0,
                what: problem,
            });
            break;
        }
        if counts.bad_packets + counts.bad_messages > 0 {
            eprintln!(
                "ticklane: {}: {} malformed packets and {} malformed messages skipped; {} messages decoded",
                path.display(),
                counts.bad_packets,
                counts.bad_messages,
                counts.messages
            );
        }
    }
    if args.summary && args.json {
        let mut text = serde_json::to_string_pretty(&summary_json(&summary, &totals))?;
        text.push('\n');
        out.write_all(text.as_bytes())?;
    } else if args.summary {
        out.write_all(summary.render(&totals).as_bytes())?;
    }
    match out.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        r => r.context("writing the output")?,
    }
    drop(out);
    if let Some(e) = failure {
        let e = anyhow::Error::from(e);
        return Err(match file {
            Some(f) => e.context(format!("{} not written", f.path().display())),
            None => e,
        });
    }
    if let Some(file) = file {
        file.commit()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `decode --summary --json`: the text summary's figures, every tracked
/// gap listed.
fn summary_json(summary: &FeedSummary, counts: &DecodeCounts) -> serde_json::Value {
    use serde_json::json;
    use ticklane_protocols::itch::MESSAGE_TYPES;
    let by_type: serde_json::Map<String, serde_json::Value> = MESSAGE_TYPES
        .iter()
        .zip(summary.by_type)
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| (char::from(t.tag).to_string(), n.into()))
        .collect();
    json!({
        "messages": summary.by_type.iter().sum::<u64>(),
        "packets": counts.packets,
        "records": counts.records,
        "other_frames": counts.foreign,
        "malformed": {"packets": counts.bad_packets, "messages": counts.bad_messages},
        "by_type": by_type,
        "sessions": summary.sessions.iter().map(|(session, s)| json!({
            "session": String::from_utf8_lossy(session.trimmed()),
            "first_seq": s.first_seq,
            "last_seq": s.first_seq.map(|_| s.next_seq.saturating_sub(1)),
            "received": s.received,
            "packets": s.packets,
            "heartbeats": s.heartbeats,
            "end_of_session_packets": s.end_of_session,
            "ended": s.end_of_session > 0,
            "duplicates": s.duplicates,
            "late_packets": s.late_packets,
            "missing": s.missing(),
            "gaps": s.gaps.iter().map(|(from, to)| json!({"from": from, "to": to})).collect::<Vec<_>>(),
            "untracked_gaps": s.untracked_gaps,
        })).collect::<Vec<_>>(),
    })
}

/// A file that held nothing ticklane could use is an error, said plainly.
fn diagnose(format: Option<Format>, c: &DecodeCounts, filtered: bool) -> Option<String> {
    if c.messages > 0 || c.packets > 0 {
        return None;
    }
    match format {
        Some(Format::Binaryfile) if c.bad_messages > 0 => {
            Some("no valid ITCH 5.0 message in this BinaryFILE".into())
        }
        Some(_) if c.bad_packets > 0 => Some(format!(
            "none of its {} UDP packets is a valid MoldUDP64 packet: is this an ITCH 5.0 feed \
             capture? (--feed GROUP:PORT selects the feed in a mixed capture)",
            c.bad_packets
        )),
        Some(_) if c.foreign > 0 => Some(format!(
            "none of its {} frames is a UDP datagram{}",
            c.foreign,
            if filtered {
                " to the selected feeds (check --feed)"
            } else {
                " over IPv4"
            }
        )),
        _ => None,
    }
}

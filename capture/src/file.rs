//! Capture files in and out: pcap and pcapng (read through `pcap-parser`,
//! micro- and nanosecond resolution, Ethernet and raw-IPv4 link types),
//! NASDAQ BinaryFILE, and writers for all three.
//!
//! Readers open a capture once. A regular file is mapped into memory and its
//! records are handed out where they lie in the page cache, never copied; a
//! FIFO or `/dev/stdin` (which cannot be mapped) is streamed with a fixed
//! buffer, so it reads like a file, in bounded memory. Every error names the
//! byte offset or the packet number, in a few words (never the bytes read).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use pcap_parser::nom;
use pcap_parser::pcapng::{
    Block, EnhancedPacketBlock, InterfaceDescriptionBlock, SectionHeaderBlock,
};
use pcap_parser::{
    LegacyPcapBlock, Linktype, PcapBlockOwned, PcapError, PcapHeader, ToVec, create_reader,
};
use ticklane_protocols::binaryfile::{self, Block as BinBlock};
use ticklane_protocols::itch;

use crate::OutputFile;

/// The file formats ticklane reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap.
    Pcap,
    /// pcapng.
    Pcapng,
    /// NASDAQ BinaryFILE: u16 length + ITCH message, no packets.
    Binaryfile,
}

impl Format {
    /// Recognises a format from a file's first bytes.
    pub fn detect(head: &[u8]) -> Option<Self> {
        match head.get(..4)? {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] => Some(Self::Pcap),
            [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] => Some(Self::Pcap),
            [0x0a, 0x0d, 0x0d, 0x0a] => Some(Self::Pcapng),
            _ => match binaryfile::next_block(head) {
                BinBlock::Message { message, .. } if itch::parse(message).is_ok() => {
                    Some(Self::Binaryfile)
                }
                _ => None,
            },
        }
    }

    /// The format a file name's extension suggests.
    pub fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "pcap" | "cap" => Some(Self::Pcap),
            "pcapng" => Some(Self::Pcapng),
            "itch" | "bin" | "NASDAQ_ITCH50" | "BX_ITCH_50" => Some(Self::Binaryfile),
            _ => None,
        }
    }
}

/// How a captured frame starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// An Ethernet header.
    Ethernet,
    /// Directly the IPv4 header.
    RawIpv4,
}

/// A frame read from a capture.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 1-based number of the packet in the file.
    pub number: u64,
    /// Byte offset of its record in the file.
    pub offset: u64,
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_nanos: u64,
    /// Link type of the bytes.
    pub link: Link,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// Why a capture could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be opened, read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The first bytes are no known format.
    #[error(
        "{path}: not a pcap, pcapng or BinaryFILE capture (first bytes {head}); \
         ticklane reads pcap/pcapng of MoldUDP64 traffic and NASDAQ BinaryFILE ITCH 5.0 files"
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// Its first bytes, in hex.
        head: String,
    },
    /// The file is empty.
    #[error("{path}: the file is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A link type ticklane does not read.
    #[error(
        "{path}: link type {linktype} is not supported (Ethernet and raw IPv4 are); \
         re-capture on the feed interface, or convert with `editcap -T ether`"
    )]
    Linktype {
        /// The file.
        path: PathBuf,
        /// The link type number.
        linktype: i32,
    },
    /// The capture's framing is broken at this point.
    #[error("{path}: byte offset {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What was wrong.
        what: String,
    },
}

const READ_BUFFER: usize = 1 << 20;

/// Bytes read before the format is decided. pcap-parser must find the first
/// block (a pcapng section header with all its options) whole in the first
/// read it makes, and that read returns exactly these bytes.
const HEAD_LEN: u64 = 64 * 1024;

/// A capture opened once: mapped (a regular file) or streamed (anything
/// else), the stream giving every byte, the first ones included.
enum Opened<R> {
    Mapped(memmap2::Mmap),
    Streamed(R),
}

/// Opens a capture once (a FIFO or `/dev/stdin` cannot be opened twice)
/// and decides its format from the first bytes.
fn open(path: &Path) -> Result<(Opened<impl Read + Send>, Format), CaptureError> {
    let io_err = |source| CaptureError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let regular = file.metadata().map_err(io_err)?.is_file();
    let (opened, head) = if regular && file.metadata().map_err(io_err)?.len() > 0 {
        // SAFETY: the mapping is only read, through `&[u8]`s that do not
        // outlive it. The one hazard of a file mapping is another process
        // truncating or rewriting the file while it is read (the bytes
        // would change under the parser, or a read past the new end would
        // fault): captures are written whole before they are read (our own
        // writers publish a file only when it is complete, by rename), and
        // every parser here checks every length it reads, whatever the
        // bytes, so changed bytes give parse errors, not unsoundness in
        // our code.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(io_err)?;
        // Read front to back: let the kernel read ahead.
        let _ = map.advise(memmap2::Advice::Sequential);
        let head = map[..map.len().min(HEAD_LEN as usize)].to_vec();
        (Opened::Mapped(map), head)
    } else {
        let mut head = Vec::new();
        Read::by_ref(&mut file)
            .take(HEAD_LEN)
            .read_to_end(&mut head)
            .map_err(io_err)?;
        let stream = io::Cursor::new(head.clone()).chain(file);
        (Opened::Streamed(stream), head)
    };
    if head.is_empty() {
        return Err(CaptureError::Empty {
            path: path.to_owned(),
        });
    }
    let format = Format::detect(&head).ok_or_else(|| CaptureError::UnknownFormat {
        path: path.to_owned(),
        head: head
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    })?;
    Ok((opened, format))
}

/// One item of a capture: a frame, or (BinaryFILE) a bare message.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    /// A captured frame.
    Frame(Frame<'a>),
    /// A BinaryFILE message with its 1-based number and byte offset.
    Message {
        /// 1-based number of the message in the file.
        number: u64,
        /// Byte offset of its length prefix.
        offset: u64,
        /// The message.
        data: &'a [u8],
    },
}

/// Reads a capture of any supported format, calling `f` for every record, in
/// file order, with a fixed-size buffer. Returns the detected format.
pub fn read(path: &Path, mut f: impl FnMut(Record<'_>)) -> Result<Format, CaptureError> {
    read_until(path, |r| {
        f(r);
        ControlFlow::Continue(())
    })
}

/// [`read`], stopping early when `f` breaks.
pub fn read_until(
    path: &Path,
    f: impl FnMut(Record<'_>) -> ControlFlow<()>,
) -> Result<Format, CaptureError> {
    let (opened, format) = open(path)?;
    match (opened, format) {
        (Opened::Mapped(map), Format::Binaryfile) => read_binaryfile_mapped(path, &map, f)?,
        (Opened::Mapped(map), Format::Pcap) => read_pcap_mapped(path, &map, f)?,
        (Opened::Mapped(map), Format::Pcapng) => read_pcapng_mapped(path, &map, f)?,
        (Opened::Streamed(file), Format::Binaryfile) => read_binaryfile(path, file, f)?,
        (Opened::Streamed(file), Format::Pcap | Format::Pcapng) => read_pcap(path, file, f)?,
    }
    Ok(format)
}

/// A BinaryFILE in memory, message by message.
fn read_binaryfile_mapped(
    path: &Path,
    data: &[u8],
    mut f: impl FnMut(Record<'_>) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    let (mut offset, mut number) = (0usize, 0u64);
    while offset < data.len() {
        match binaryfile::next_block(&data[offset..]) {
            BinBlock::Message { message, consumed } => {
                number += 1;
                let record = Record::Message {
                    number,
                    offset: offset as u64,
                    data: message,
                };
                if f(record).is_break() {
                    return Ok(());
                }
                offset += consumed;
            }
            BinBlock::EmptyMessage => return Err(empty_block(path, offset as u64)),
            BinBlock::Incomplete { needed } => {
                return Err(truncated_block(
                    path,
                    offset as u64,
                    data.len() - offset,
                    needed,
                ));
            }
        }
    }
    Ok(())
}

fn empty_block(path: &Path, offset: u64) -> CaptureError {
    CaptureError::Corrupt {
        path: path.to_owned(),
        offset,
        what: "BinaryFILE block of length 0".into(),
    }
}

fn truncated_block(path: &Path, offset: u64, have: usize, needed: usize) -> CaptureError {
    CaptureError::Corrupt {
        path: path.to_owned(),
        offset,
        what: format!(
            "the file ends inside a BinaryFILE block ({have} of {needed} bytes): truncated?"
        ),
    }
}

fn read_binaryfile(
    path: &Path,
    file: impl Read,
    mut f: impl FnMut(Record<'_>) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let mut buf = vec![0u8; READ_BUFFER];
    let (mut start, mut end) = (0usize, 0usize);
    let (mut offset, mut number) = (0u64, 0u64);
    loop {
        match binaryfile::next_block(&buf[start..end]) {
            BinBlock::Message { message, consumed } => {
                number += 1;
                if f(Record::Message {
                    number,
                    offset,
                    data: message,
                })
                .is_break()
                {
                    return Ok(());
                }
                offset += consumed as u64;
                start += consumed;
            }
            BinBlock::EmptyMessage => return Err(empty_block(path, offset)),
            BinBlock::Incomplete { needed } => {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
                debug_assert!(needed <= buf.len());
                let n = reader
                    .read(&mut buf[end..])
                    .map_err(|source| CaptureError::Io {
                        path: path.to_owned(),
                        source,
                    })?;
                if n == 0 {
                    if end == 0 {
                        return Ok(());
                    }
                    return Err(truncated_block(path, offset, end, needed));
                }
                end += n;
            }
        }
    }
}

/// Per-interface state of a pcapng section.
struct Interface {
    link: Option<Link>,
    linktype: i32,
    /// Ticks per second.
    resolution: u64,
    offset_secs: i64,
}

fn link_of(linktype: Linktype) -> Option<Link> {
    match linktype {
        Linktype::ETHERNET => Some(Link::Ethernet),
        Linktype::RAW | Linktype::IPV4 => Some(Link::RawIpv4),
        _ => None,
    }
}

/// Turns pcap and pcapng blocks into records: what the mapped and the
/// streamed readers share.
struct Blocks<'p> {
    path: &'p Path,
    /// Frames so far.
    number: u64,
    /// Legacy pcap: one link type and resolution for the file.
    legacy: Option<(Option<Link>, i32, bool)>,
    interfaces: Vec<Interface>,
}

impl<'p> Blocks<'p> {
    fn new(path: &'p Path) -> Self {
        Self {
            path,
            number: 0,
            legacy: None,
            interfaces: Vec::new(),
        }
    }

    fn corrupt(&self, offset: u64, what: String) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.to_owned(),
            offset,
            what,
        }
    }

    fn linktype(&self, linktype: i32) -> CaptureError {
        CaptureError::Linktype {
            path: self.path.to_owned(),
            linktype,
        }
    }

    /// The block at `offset`; a frame goes to `f` as a record.
    fn block(
        &mut self,
        offset: u64,
        block: PcapBlockOwned<'_>,
        f: &mut impl FnMut(Record<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, CaptureError> {
        let frame = match block {
            PcapBlockOwned::LegacyHeader(h) => {
                self.legacy = Some((link_of(h.network), h.network.0, h.is_nanosecond_precision()));
                None
            }
            PcapBlockOwned::Legacy(b) => {
                self.number += 1;
                let (link, linktype, nanos) = self.legacy.unwrap_or((None, -1, false));
                let link = link.ok_or_else(|| self.linktype(linktype))?;
                let frac = u64::from(b.ts_usec) * if nanos { 1 } else { 1000 };
                let ts_nanos = u64::from(b.ts_sec) * 1_000_000_000 + frac;
                Some((ts_nanos, link, b.data))
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                self.interfaces.clear();
                None
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                self.interfaces.push(Interface {
                    link: link_of(idb.linktype),
                    linktype: idb.linktype.0,
                    resolution: idb.ts_resolution().unwrap_or(1_000_000),
                    offset_secs: idb.ts_offset(),
                });
                None
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                self.number += 1;
                let number = self.number;
                let iface = self.interfaces.get(epb.if_id as usize).ok_or_else(|| {
                    self.corrupt(
                        offset,
                        format!("packet {number} names undeclared interface {}", epb.if_id),
                    )
                })?;
                let link = iface.link.ok_or_else(|| self.linktype(iface.linktype))?;
                let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let res = iface.resolution.max(1);
                let secs = (ticks / res).saturating_add_signed(iface.offset_secs);
                let frac = u128::from(ticks % res) * 1_000_000_000 / u128::from(res);
                let ts_nanos = secs
                    .saturating_mul(1_000_000_000)
                    .saturating_add(frac as u64);
                let data = epb.data.get(..epb.caplen as usize).unwrap_or(epb.data);
                Some((ts_nanos, link, data))
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                self.number += 1;
                let number = self.number;
                let iface = self.interfaces.first().ok_or_else(|| {
                    self.corrupt(
                        offset,
                        format!("packet {number} before any interface description"),
                    )
                })?;
                let link = iface.link.ok_or_else(|| self.linktype(iface.linktype))?;
                Some((0, link, spb.data))
            }
            PcapBlockOwned::NG(_) => None,
        };
        Ok(match frame {
            Some((ts_nanos, link, data)) => f(Record::Frame(Frame {
                number: self.number,
                offset,
                ts_nanos,
                link,
                data,
            })),
            None => ControlFlow::Continue(()),
        })
    }

    /// A record that does not parse, at `offset`.
    fn unreadable<I>(&self, offset: u64, e: &PcapError<I>) -> CaptureError {
        let number = self.number;
        self.corrupt(
            offset,
            format!(
                "the record after packet {number} is unreadable ({}): a corrupt length \
                 or type field? Nothing past this offset can be read; `head -c {offset}` \
                 keeps the packets before it",
                pcap_cause(e)
            ),
        )
    }

    /// A parse error of the mapped readers.
    fn nom_error(&self, offset: u64, e: nom::Err<PcapError<&[u8]>>) -> CaptureError {
        match e {
            nom::Err::Incomplete(_) => self.corrupt(offset, truncated(self.number)),
            nom::Err::Error(e) | nom::Err::Failure(e) => self.unreadable(offset, &e),
        }
    }
}

fn read_pcap(
    path: &Path,
    file: impl Read + Send,
    mut f: impl FnMut(Record<'_>) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    let mut blocks = Blocks::new(path);
    let mut reader = create_reader(READ_BUFFER, file)
        .map_err(|e| blocks.corrupt(0, format!("unreadable capture header: {}", pcap_cause(&e))))?;
    let mut offset = 0u64;
    loop {
        match reader.next() {
            Ok((consumed, block)) => {
                if blocks.block(offset, block, &mut f)?.is_break() {
                    return Ok(());
                }
                offset += consumed as u64;
                reader.consume(consumed);
            }
            Err(PcapError::Eof) => return Ok(()),
            Err(PcapError::Incomplete(_)) => {
                reader.refill().map_err(|e| match e {
                    PcapError::Eof | PcapError::UnexpectedEof | PcapError::Incomplete(_) => {
                        blocks.corrupt(offset, truncated(blocks.number))
                    }
                    other => blocks.corrupt(
                        offset,
                        format!(
                            "reading after packet {}: {}",
                            blocks.number,
                            pcap_cause(&other)
                        ),
                    ),
                })?;
            }
            Err(PcapError::UnexpectedEof) => {
                return Err(blocks.corrupt(offset, truncated(blocks.number)));
            }
            Err(e) => return Err(blocks.unreadable(offset, &e)),
        }
    }
}

/// A legacy pcap file in memory, frame by frame.
fn read_pcap_mapped(
    path: &Path,
    data: &[u8],
    mut f: impl FnMut(Record<'_>) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    let mut blocks = Blocks::new(path);
    let (rest, header) = pcap_parser::parse_pcap_header(data).map_err(|e| {
        let cause = match e {
            nom::Err::Incomplete(_) => "the file ends inside it".into(),
            nom::Err::Error(e) | nom::Err::Failure(e) => pcap_cause(&e),
        };
        blocks.corrupt(0, format!("unreadable capture header: {cause}"))
    })?;
    let parse = if header.is_modified_format() {
        pcap_parser::parse_pcap_frame_modified
    } else if header.is_bigendian() {
        pcap_parser::parse_pcap_frame_be
    } else {
        pcap_parser::parse_pcap_frame
    };
    if blocks
        .block(0, PcapBlockOwned::LegacyHeader(header), &mut f)?
        .is_break()
    {
        return Ok(());
    }
    walk_mapped(
        &mut blocks,
        data,
        rest,
        |b| parse(b).map(|(after, frame)| (after, PcapBlockOwned::Legacy(frame))),
        f,
    )
}

/// A pcapng file in memory, block by block (each section in its own byte
/// order).
fn read_pcapng_mapped(
    path: &Path,
    data: &[u8],
    f: impl FnMut(Record<'_>) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    let mut big_endian = false;
    let next = |b| {
        let parsed = if big_endian {
            pcap_parser::parse_block_be(b)
        } else {
            pcap_parser::parse_block_le(b)
        };
        parsed.map(|(after, block)| {
            if let Block::SectionHeader(shb) = &block {
                big_endian = shb.big_endian();
            }
            (after, PcapBlockOwned::NG(block))
        })
    };
    walk_mapped(&mut Blocks::new(path), data, data, next, f)
}

/// The blocks `next` parses from `rest` (the tail of `data`) to the end.
fn walk_mapped<'a>(
    blocks: &mut Blocks<'_>,
    data: &'a [u8],
    mut rest: &'a [u8],
    mut next: impl FnMut(
        &'a [u8],
    ) -> Result<(&'a [u8], PcapBlockOwned<'a>), nom::Err<PcapError<&'a [u8]>>>,
    mut f: impl FnMut(Record<'_>) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    while !rest.is_empty() {
        let offset = (data.len() - rest.len()) as u64;
        let (after, block) = next(rest).map_err(|e| blocks.nom_error(offset, e))?;
        if blocks.block(offset, block, &mut f)?.is_break() {
            return Ok(());
        }
        rest = after;
    }
    Ok(())
}

fn truncated(number: u64) -> String {
    format!(
        "the file ends inside the record of packet {}: truncated?",
        number + 1
    )
}

/// A pcap-parser error in a few words. Never the bytes some errors carry: a
/// `NomError` holds the rest of the read buffer, up to a megabyte.
fn pcap_cause<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::Eof | PcapError::UnexpectedEof | PcapError::Incomplete(_) => {
            "the file ends inside it".into()
        }
        PcapError::ReadError => "reading failed".into(),
        PcapError::HeaderNotRecognized => "not a pcap or pcapng header".into(),
        PcapError::BufferTooSmall => format!("it claims more than {} MiB", READ_BUFFER >> 20),
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("malformed: {kind:?}")
        }
    }
}

/// Writes captures of any supported format, streaming. The file appears at
/// its path only when [`CaptureWriter::finish`] succeeds: a writer dropped
/// before (an error on the way) leaves nothing behind.
pub struct CaptureWriter {
    out: BufWriter<OutputFile>,
    format: Format,
    path: PathBuf,
}

const SNAPLEN: u32 = 65535;

impl CaptureWriter {
    /// Starts writing `path` (an existing file is replaced at
    /// [`CaptureWriter::finish`]) with the file header.
    pub fn create(path: &Path, format: Format) -> Result<Self, CaptureError> {
        let file = OutputFile::create(path)?;
        let mut w = Self {
            out: BufWriter::with_capacity(1 << 20, file),
            format,
            path: path.to_owned(),
        };
        match format {
            Format::Pcap => {
                let mut h = PcapHeader {
                    snaplen: SNAPLEN,
                    network: Linktype::ETHERNET,
                    ..PcapHeader::new()
                };
                h.magic_number = 0xa1b2_3c4d; // nanosecond resolution
                w.put_vec(h.to_vec_raw())?;
            }
            Format::Pcapng => {
                let mut shb = SectionHeaderBlock {
                    block_type: 0x0a0d_0d0a,
                    block_len1: 0,
                    bom: 0x1a2b_3c4d,
                    major_version: 1,
                    minor_version: 0,
                    section_len: -1,
                    options: Vec::new(),
                    block_len2: 0,
                };
                w.put_vec(shb.to_vec())?;
                let resol = [9u8, 0, 0, 0];
                let mut idb = InterfaceDescriptionBlock {
                    block_type: 1,
                    block_len1: 0,
                    linktype: Linktype::ETHERNET,
                    reserved: 0,
                    snaplen: SNAPLEN,
                    options: vec![pcap_parser::pcapng::PcapNGOption {
                        code: pcap_parser::pcapng::OptionCode::IfTsresol,
                        len: 1,
                        value: std::borrow::Cow::Borrowed(&resol[..1]),
                    }],
                    block_len2: 0,
                    if_tsresol: 9,
                    if_tsoffset: 0,
                };
                w.put_vec(idb.to_vec())?;
            }
            Format::Binaryfile => {}
        }
        Ok(w)
    }

    fn put_vec(&mut self, v: Result<Vec<u8>, impl std::fmt::Debug>) -> Result<(), CaptureError> {
        let bytes = v.map_err(|e| CaptureError::Corrupt {
            path: self.path.clone(),
            offset: 0,
            what: format!("cannot serialise a capture block: {e:?}"),
        })?;
        self.put(&bytes)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CaptureError> {
        self.out
            .write_all(bytes)
            .map_err(|source| CaptureError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// The format being written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Appends one frame (pcap or pcapng).
    pub fn write_frame(&mut self, ts_nanos: u64, frame: &[u8]) -> Result<(), CaptureError> {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        match self.format {
            Format::Pcap => {
                let block = LegacyPcapBlock {
                    ts_sec: u32::try_from(ts_nanos / 1_000_000_000).unwrap_or(u32::MAX),
                    ts_usec: (ts_nanos % 1_000_000_000) as u32,
                    caplen: len,
                    origlen: len,
                    data: frame,
                };
                self.put_vec(block.to_vec_raw())
            }
            Format::Pcapng => {
                let mut block = EnhancedPacketBlock {
                    block_type: 6,
                    block_len1: 0,
                    if_id: 0,
                    ts_high: (ts_nanos >> 32) as u32,
                    ts_low: ts_nanos as u32,
                    caplen: len,
                    origlen: len,
                    data: frame,
                    options: Vec::new(),
                    block_len2: 0,
                };
                self.put_vec(block.to_vec())
            }
            Format::Binaryfile => Err(CaptureError::Corrupt {
                path: self.path.clone(),
                offset: 0,
                what: "a BinaryFILE holds messages, not frames".into(),
            }),
        }
    }

    /// Appends one message (BinaryFILE).
    pub fn write_message(&mut self, message: &[u8]) -> Result<(), CaptureError> {
        let len = u16::try_from(message.len())
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| CaptureError::Corrupt {
                path: self.path.clone(),
                offset: 0,
                what: format!("a message of {} bytes cannot be framed", message.len()),
            })?;
        self.put(&len.to_be_bytes())?;
        self.put(message)
    }

    /// Flushes everything and puts the file in place.
    pub fn finish(self) -> Result<(), CaptureError> {
        self.out
            .into_inner()
            .map_err(|e| CaptureError::Io {
                path: self.path,
                source: e.into_error(),
            })?
            .commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticklane_protocols::moldudp64::{PacketBuilder, Session};
    use ticklane_protocols::wire::{UdpFrameSpec, write_udp_frame};

    /// A little-endian legacy pcap with the given magic and link type, holding
    /// `frames` with timestamps (seconds, fraction).
    fn legacy_pcap(magic: u32, linktype: u32, frames: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&magic.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&linktype.to_le_bytes());
        for (sec, frac, data) in frames {
            f.extend_from_slice(&sec.to_le_bytes());
            f.extend_from_slice(&frac.to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(data);
        }
        f
    }

    fn mold_frame() -> Vec<u8> {
        let mut payload = [0u8; 64];
        let mut b = PacketBuilder::new(&mut payload, Session::from_name(b"T").unwrap(), 5).unwrap();
        b.push(&[b'S', 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'O']).unwrap();
        let spec = UdpFrameSpec::multicast([2; 6], [198, 18, 0, 1], [239, 1, 1, 1], 26477);
        let mut frame = vec![0u8; 128];
        let n = write_udp_frame(&mut frame, &spec, b.finish()).unwrap();
        frame.truncate(n);
        frame
    }

    fn frames_of(bytes: &[u8]) -> Vec<(u64, Link, Vec<u8>)> {
        let dir = tempfile_dir();
        let path = dir.join("t.pcap");
        std::fs::write(&path, bytes).unwrap();
        let mut got = Vec::new();
        read(&path, |r| {
            if let Record::Frame(f) = r {
                got.push((f.ts_nanos, f.link, f.data.to_vec()));
            }
        })
        .unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        got
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ticklane-capture-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn microsecond_and_nanosecond_pcaps_give_nanoseconds() {
        let frame = mold_frame();
        let micro = legacy_pcap(0xa1b2_c3d4, 1, &[(10, 250_000, &frame)]);
        assert_eq!(
            frames_of(&micro),
            vec![(10_250_000_000, Link::Ethernet, frame.clone())]
        );
        let nano = legacy_pcap(0xa1b2_3c4d, 1, &[(10, 250_000, &frame)]);
        assert_eq!(
            frames_of(&nano),
            vec![(10_000_250_000, Link::Ethernet, frame.clone())]
        );
    }

    #[test]
    fn raw_ip_captures_start_at_the_ip_header() {
        let frame = mold_frame();
        let raw = legacy_pcap(0xa1b2_c3d4, 101, &[(1, 0, &frame[14..])]);
        assert_eq!(
            frames_of(&raw),
            vec![(1_000_000_000, Link::RawIpv4, frame[14..].to_vec())]
        );
    }

    #[test]
    fn unsupported_link_types_are_named() {
        let frame = mold_frame();
        let wifi = legacy_pcap(0xa1b2_c3d4, 105, &[(1, 0, &frame)]);
        let dir = tempfile_dir();
        let path = dir.join("wifi.pcap");
        std::fs::write(&path, wifi).unwrap();
        let err = read(&path, |_| {}).unwrap_err();
        std::fs::remove_dir_all(dir).unwrap();
        assert!(
            err.to_string().contains("link type 105 is not supported"),
            "{err}"
        );
    }

    #[test]
    fn written_pcapng_reads_back_with_nanosecond_times() {
        let dir = tempfile_dir();
        let path = dir.join("w.pcapng");
        let frame = mold_frame();
        let mut w = CaptureWriter::create(&path, Format::Pcapng).unwrap();
        w.write_frame(1_795_651_200_123_456_789, &frame).unwrap();
        w.finish().unwrap();
        let mut got = Vec::new();
        let format = read(&path, |r| {
            if let Record::Frame(f) = r {
                got.push((f.number, f.ts_nanos, f.data.to_vec()));
            }
        })
        .unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(format, Format::Pcapng);
        assert_eq!(got, vec![(1, 1_795_651_200_123_456_789, frame)]);
    }

    /// Every record (number, offset, bytes) and the error, as text.
    type Read = (Vec<(u64, u64, Vec<u8>)>, Option<String>);

    fn collect(
        records: &mut Vec<(u64, u64, Vec<u8>)>,
    ) -> impl FnMut(Record<'_>) -> ControlFlow<()> + '_ {
        |r| {
            records.push(match r {
                Record::Frame(f) => (f.number, f.offset, f.data.to_vec()),
                Record::Message {
                    number,
                    offset,
                    data,
                } => (number, offset, data.to_vec()),
            });
            ControlFlow::Continue(())
        }
    }

    /// A file read mapped (as `read` does for a regular file) and streamed
    /// (as for a FIFO) gives the same records and the same error.
    #[test]
    fn mapped_and_streamed_reads_agree() {
        let dir = tempfile_dir();
        let frame = mold_frame();
        let mut files = Vec::new();
        for (name, format) in [
            ("w.pcap", Format::Pcap),
            ("w.pcapng", Format::Pcapng),
            ("w.itch", Format::Binaryfile),
        ] {
            let path = dir.join(name);
            let mut w = CaptureWriter::create(&path, format).unwrap();
            for i in 0..5u64 {
                if format == Format::Binaryfile {
                    w.write_message(&frame[42 + 20 + 2..]).unwrap();
                } else {
                    w.write_frame(1_000 + i, &frame).unwrap();
                }
            }
            w.finish().unwrap();
            files.push((path, format));
        }
        let nano = dir.join("nano.pcap");
        std::fs::write(
            &nano,
            legacy_pcap(0xa1b2_3c4d, 1, &[(1, 2, &frame), (3, 4, &frame)]),
        )
        .unwrap();
        files.push((nano, Format::Pcap));
        for (path, format) in files.clone() {
            let bytes = std::fs::read(&path).unwrap();
            let cut = path.with_extension(format!(
                "cut.{}",
                path.extension().unwrap().to_str().unwrap()
            ));
            std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
            files.push((cut, format));
        }
        for (path, format) in files {
            let mut mapped = Vec::new();
            let m = read_until(&path, collect(&mut mapped));
            assert!(matches!(m, Ok(f) if f == format) || m.is_err());
            let mapped: Read = (mapped, m.err().map(|e| e.to_string()));
            let mut streamed = Vec::new();
            let file = File::open(&path).unwrap();
            let s = match format {
                Format::Binaryfile => read_binaryfile(&path, file, collect(&mut streamed)),
                Format::Pcap | Format::Pcapng => read_pcap(&path, file, collect(&mut streamed)),
            };
            let streamed: Read = (streamed, s.err().map(|e| e.to_string()));
            assert!(!mapped.0.is_empty(), "{}", path.display());
            let cut = path.to_str().unwrap().contains(".cut.");
            assert_eq!(
                mapped.1.is_some(),
                cut,
                "{}: {:?}",
                path.display(),
                mapped.1
            );
            assert_eq!(mapped, streamed, "{}", path.display());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn detection_by_content() {
        assert_eq!(
            Format::detect(&[0xd4, 0xc3, 0xb2, 0xa1]),
            Some(Format::Pcap)
        );
        assert_eq!(
            Format::detect(&[0x4d, 0x3c, 0xb2, 0xa1]),
            Some(Format::Pcap)
        );
        assert_eq!(
            Format::detect(&[0x0a, 0x0d, 0x0d, 0x0a]),
            Some(Format::Pcapng)
        );
        let mut bin = vec![0, 12, b'S'];
        bin.extend_from_slice(&[0; 10]);
        bin.push(b'O');
        assert_eq!(Format::detect(&bin), Some(Format::Binaryfile));
        assert_eq!(Format::detect(b"GET / HTTP/1.1"), None);
    }
}

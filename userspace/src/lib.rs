//! # ticklane: the appliance
//!
//! Everything that owns threads, files, sockets and time sits here, above the
//! byte-level [`ticklane_protocols`] crate:
//!
//! - [`book`]: full-depth order books for every stock, exact ITCH semantics;
//! - [`vwap`] and [`bus`]: sliding-window VWAP; lock-free SPSC rings that fan
//!   events out, with a loss-free audit ring;
//! - [`pipeline`]: books + VWAP + tape behind one static handler, and
//!   `replay` of a capture through the session layer;
//! - [`retrans`]: a MoldUDP64 re-request server answering from a capture;
//! - [`capture`]: pcap / pcapng / BinaryFILE readers (streaming, bounded
//!   memory) and writers;
//! - [`feed`]: capture records → sequenced ITCH messages, with every malformed
//!   packet located, reported and skipped; per-session sequence accounting;
//! - [`json`]: the canonical decode format of `shared/ITCH50.md`;
//! - [`session`]: MoldUDP64 sequencing, gap recovery and A/B arbitration as
//!   pure state machines;
//! - [`market`] and [`generate`]: the deterministic synthetic market behind
//!   `ticklane gen`, packed into MoldUDP64 multicast frames.

pub mod book;
pub mod bus;
pub mod capture;
pub mod feed;
pub mod generate;
pub mod json;
pub mod market;
pub mod net;
pub mod pipeline;
pub mod retrans;
pub mod run;
pub mod session;
pub mod vwap;

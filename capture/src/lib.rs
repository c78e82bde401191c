//! # ticklane-capture: feeds at rest
//!
//! Everything ticklane does with captured market data, above the byte-level
//! [`ticklane_protocols`] crate and below the appliance:
//!
//! - the capture files themselves ([`read`], [`CaptureWriter`]): pcap,
//!   pcapng and NASDAQ BinaryFILE, read in one streaming pass with bounded
//!   memory and written by the generator; [`OutputFile`]: outputs that
//!   appear whole or not at all;
//! - [`feed`]: capture records → sequenced ITCH messages, with every
//!   malformed packet located (record number, byte offset), reported and
//!   skipped; per-session sequence accounting for `ticklane decode --summary`;
//! - [`pace`]: a capture's own timing, sped up or slowed down;
//! - [`canonical`]: the canonical JSON Lines formats of decoded messages and
//!   of books (described in `docs/formats.md`).

pub mod canonical;
pub mod feed;
mod file;
mod output;
pub mod pace;

pub use file::*;
pub use output::OutputFile;

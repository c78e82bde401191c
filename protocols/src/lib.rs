//! # ticklane-protocols: the bytes of a market-data feed, and nothing else
//!
//! This crate is the layer every other part of ticklane parses with. It knows
//! wire formats and nothing about sockets, threads, clocks or files:
//!
//! - [`wire`]: Ethernet (802.1Q / QinQ tags), IPv4 and UDP views, and an encoder
//!   for multicast UDP frames.
//! - [`moldudp64`]: the MoldUDP64 downstream packet (session, sequence number,
//!   message blocks), heartbeats, end of session, and the re-request packet.
//! - [`itch`]: all 23 NASDAQ TotalView-ITCH 5.0 messages as packed big-endian
//!   layouts, generated from one table, with a statically dispatched
//!   [`itch::Handler`].
//! - [`binaryfile`]: NASDAQ's BinaryFILE framing (u16 length + message).
//!
//! ## Guarantees
//!
//! - **No allocation, no copy** on any parse path: every view borrows the
//!   caller's buffer (a UMEM frame, a file buffer) and reads fields in place.
//!   The crate is `no_std` and does not link `alloc`.
//! - **No panic on any input.** Untrusted bytes always enter through a
//!   `new_checked` constructor (or [`itch::parse`] / [`itch::dispatch`]) that
//!   validates every length once; after that no accessor can index out of
//!   bounds. Failures are small `Copy` error enums.
//! - **Static dispatch.** [`itch::dispatch`] is generic over the handler, so
//!   the compiler turns the type byte into a jump straight to the handler's
//!   method; a method the handler does not override costs nothing.
#![no_std]
#![deny(unsafe_code)]

pub mod binaryfile;
pub mod itch;
pub mod moldudp64;
pub mod wire;

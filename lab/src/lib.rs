//! # ticklane-lab: playing the exchange
//!
//! What tests, benchmarks and demos use to stand in for NASDAQ, never linked
//! into the appliance's hot path:
//!
//! - [`market`] and [`generate`]: the deterministic synthetic market behind
//!   `ticklane gen`, with consistent order life cycles and a real day's mix,
//!   packed into MoldUDP64 multicast frames, optionally damaged;
//! - [`retrans`]: a MoldUDP64 re-request server answering from a capture,
//!   safe to expose (an allowlist, a rate per client, bounded answers);
//! - [`send`]: putting a capture's frames on a wire (AF_PACKET) at the
//!   capture's timing, a fixed rate, or as fast as possible.

pub mod generate;
pub mod market;
pub mod retrans;
pub mod send;

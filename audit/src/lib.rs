//! The audit trail: every message the poller delivered, kept once.
//!
//! The poller copies each delivered message into the audit ring (the one
//! deliberate copy of the data path). The [`writer`] thread, never on a
//! poller core, drains that ring into the local [`journal`]: append-only
//! segment files of CRC'd [`record`]s with a configurable fsync policy.
//! Whatever could not be journaled (a full ring, a full disk) is journaled
//! as a gap with its exact bounds, never lost silently; what the ring missed
//! is first asked for again from the re-request servers ([`fill`]). A
//! restart on the same journal rebuilds the books from it ([`restore`]).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod fill;
pub mod journal;
pub mod query;
pub mod record;
pub mod restore;
pub mod shipper;
pub mod store;
pub mod usage;
pub mod verify;
pub mod writer;

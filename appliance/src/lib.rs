//! # ticklane-appliance: the hot path
//!
//! Everything a packet meets between the NIC queue and the consumers, and
//! nothing else: no argument parsing, no printing, no async runtime. Typed
//! configuration goes in, typed errors and a stats snapshot come out.
//!
//! - [`source`]: where packets come from, behind one [`source::Source`]
//!   trait: XDP + AF_XDP (with the steering program), kernel UDP sockets,
//!   capture files;
//! - [`poller`]: the one loop that drives any source through sequencing
//!   and arbitration into the delivery path, with timers and recovery;
//! - [`session`]: MoldUDP64 sequencing, gap recovery and A/B arbitration as
//!   pure state machines, one per session;
//! - [`delivery`]: the one sink that carries out what the session layer
//!   decides (deliver, request, report), with the audit ring's misses and
//!   the lost ranges recorded exactly;
//! - [`recovery`]: the re-request client socket;
//! - [`pipeline`], [`book`], [`analytics`]: full-depth order books, VWAP and
//!   the trade tape behind one statically dispatched handler;
//! - [`bus`]: lock-free rings from the poller to its consumers, and the
//!   loss-free audit ring;
//! - [`stats`]: the wait-free snapshot other threads read;
//! - [`request`]: the ring the control plane asks a poller through (book
//!   snapshots, feeds added and removed), served between packets;
//! - [`sys`]: the raw Linux calls, each with its safety proof.

pub mod analytics;
pub mod book;
pub mod bus;
pub mod delivery;
pub mod pipeline;
pub mod poller;
pub mod recovery;
pub mod request;
pub mod session;
pub mod source;
pub mod stats;
pub mod sys;

//! # ticklane-control: the slow path
//!
//! Everything an operator asks of a running appliance, on threads of its
//! own (a small tokio runtime), never on a poller's:
//!
//! - [`grpc`]: the `ticklane.v1.Appliance` gRPC service (tonic, with server
//!   reflection), compiled from `proto/ticklane/v1/ticklane.proto`;
//! - [`line`]: the TCP line protocol for `nc` and scripts;
//! - [`metrics`]: Prometheus text at `/metrics`, `/healthz`, `/readyz`;
//! - [`appliance`]: what they all share: the stats snapshots, the feeds
//!   and their live changes, the book snapshots, the event streams;
//! - [`link`]: the one thread that talks to the poller's request ring;
//! - [`settings`]: what an operator may change live (`ticklane ctl config`);
//! - [`store`]: the feeds subscribed live and the settings changed live,
//!   kept across restarts (redb).
//!
//! # What it guarantees
//!
//! The control plane reads the poller's wait-free stats snapshots and the
//! bus's event rings, and asks the poller for anything else through the
//! bounded request ring of [`ticklane_appliance::request`], which the poller
//! serves between packets with bounded work: nothing here can block or slow
//! a poller. A slow stream client loses events (told in its stream, counted
//! in the metrics), never the feed. Every refusal says what to do.

pub mod appliance;
pub mod counters;
pub mod error;
pub mod feeds;
pub mod grpc;
pub mod line;
pub mod link;
pub mod metrics;
mod server;
pub mod settings;
pub mod store;

pub use appliance::{Appliance, ApplianceInfo};
pub use error::ControlError;
pub use server::{ControlConfig, ControlPlane, Limits, Parts};

/// The generated messages and service of `ticklane.v1`.
pub mod proto {
    // `allow`, not `expect`: which of these fire depends on the generator's
    // version, and the generated code is not ours to change.
    #![allow(
        missing_docs,
        clippy::all,
        clippy::allow_attributes_without_reason,
        reason = "generated from the .proto (documented there) by tonic-prost-build"
    )]
    tonic::include_proto!("ticklane.v1");

    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("ticklane_descriptor");
}

//! `ticklane run`'s control plane: the options, and starting it beside the
//! poller (see the `ticklane-control` crate).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use ticklane_appliance::poller::Poller;
use ticklane_appliance::source::Source;
use ticklane_appliance::source::udp::FeedSocket;
use ticklane_capture::feed::Feed;
use ticklane_control::feeds::{Feeds, Steer};
use ticklane_control::store::Store;
use ticklane_control::{ApplianceInfo, ControlConfig, ControlPlane};

use super::report::PathInfo;

/// The control plane's listeners.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ControlArgs {
    /// Serve the gRPC API (ticklane.v1.Appliance, with reflection) on ADDR,
    /// e.g. 127.0.0.1:50051.
    #[arg(long, value_name = "ADDR")]
    pub(crate) grpc: Option<SocketAddr>,
    /// Serve the TCP line protocol (HELP, STATUS, BOOK …) on ADDR.
    #[arg(long, value_name = "ADDR")]
    pub(crate) control: Option<SocketAddr>,
    /// Serve Prometheus /metrics, /healthz and /readyz over HTTP on ADDR.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    /// File holding the bearer token that Subscribe/Unsubscribe (SUB/UNSUB
    /// after AUTH) need; without it, live feed changes are refused.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Keep the feeds subscribed live in this file (redb, created if need
    /// be): they are subscribed again when the appliance restarts with it.
    #[arg(long, value_name = "FILE")]
    pub(crate) state: Option<PathBuf>,
    /// Threads serving the control plane (gRPC, line protocol, metrics);
    /// keep them off the poller's core on a busy machine.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) control_threads: u16,
}

impl ControlArgs {
    /// True when some listener is asked for.
    pub(crate) fn enabled(&self) -> bool {
        self.grpc.is_some()
            || self.control.is_some()
            || self.metrics.is_some()
            || self.state.is_some()
    }
}

/// The control plane, ready to start once the poller exists.
pub(crate) struct Pending {
    cfg: ControlConfig,
    threads: usize,
    feeds: Feeds,
    iface: String,
    ifindex: u32,
    queue: u32,
}

/// Prepares the control plane for `feeds` (line = position), with their
/// group memberships (XDP path), changed as `steer` says.
pub(crate) fn prepare(
    args: &ControlArgs,
    feeds: Vec<(Feed, Option<FeedSocket>)>,
    steer: Steer,
    (iface, ifindex, queue): (&str, u32, u32),
) -> anyhow::Result<Pending> {
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?;
            let token = text.trim().to_owned();
            if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                anyhow::bail!(
                    "the token file {} must hold one token: printable, without spaces",
                    path.display()
                );
            }
            Some(token)
        }
        None => None,
    };
    Ok(Pending {
        cfg: ControlConfig {
            grpc: args.grpc,
            control: args.control,
            metrics: args.metrics,
            token,
            ..ControlConfig::default()
        },
        threads: usize::from(args.control_threads),
        feeds: match &args.state {
            Some(path) => Feeds::new(feeds, steer, ifindex).with_store(Store::open(path)?),
            None => Feeds::new(feeds, steer, ifindex),
        },
        iface: iface.to_owned(),
        ifindex,
        queue,
    })
}

impl Pending {
    /// Starts serving, attached to `poller` (its request ring and a stats
    /// reader of its own).
    pub(crate) fn start<S: Source>(
        self,
        poller: &mut Poller<'_, S>,
        path: &PathInfo,
    ) -> anyhow::Result<ControlPlane> {
        let info = ApplianceInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            interface: self.iface,
            ifindex: self.ifindex,
            queue: self.queue,
            mode: path.mode.to_owned(),
            xdp_mode: path.xdp_mode.unwrap_or_default().to_owned(),
            bind: path.bind.unwrap_or_default().to_owned(),
        };
        let plane = ControlPlane::attach(poller, self.cfg, info, self.feeds, self.threads)?;
        plane.restore(|line| eprintln!("ticklane run: {line}"));
        let b = plane.bound;
        for (what, addr) in [
            ("gRPC", b.grpc),
            ("line control", b.control),
            ("metrics", b.metrics),
        ] {
            if let Some(addr) = addr {
                eprintln!("ticklane run: {what} on {addr}");
            }
        }
        Ok(plane)
    }
}

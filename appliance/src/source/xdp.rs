//! The kernel-bypass source: the XDP program steers the subscribed feeds of
//! one NIC queue into an AF_XDP socket (only their frames with the
//! interface's VLAN tags and, where a feed names one, from its source), and
//! each frame is walked down to its UDP payload where it lies in the UMEM,
//! its checksums verified ([`Admission`]), then returned to the fill ring.

use std::net::Ipv4Addr;

use ticklane_capture::feed::{Feed, FeedFilter};
pub use ticklane_xdp::Vlan;

use super::admission::{Admission, Checksums};
use super::steering::{AttachedMode, Steering, SteeringError, Subscriptions, XdpModeRequest};
use super::udp::FeedSocket;
use super::xsk::{XskConfig, XskError, XskReceiver};
use super::{
    Arrival, FeedChangeError, Payload, Polled, RxSource, RxTime, Source, SourceCounters,
    SourceError, Verdict, Wait,
};

/// What to steer where.
#[derive(Debug, Clone)]
pub struct XdpConfig {
    /// The interface.
    pub iface: String,
    /// The feeds, line = position.
    pub feeds: Vec<Feed>,
    /// The VLAN tags the feeds' frames carry on the interface.
    pub vlan: Vlan,
    /// Whether checksums are verified or left to the NIC.
    pub checksums: Checksums,
    /// Native, generic, or native falling back to generic.
    pub mode: XdpModeRequest,
    /// The AF_XDP socket: queue, rings, bind mode.
    pub xsk: XskConfig,
}

/// Why the XDP path could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The steering program.
    #[error(transparent)]
    Steering(#[from] SteeringError),
    /// The AF_XDP socket.
    #[error(transparent)]
    Xsk(#[from] XskError),
}

impl XdpError {
    /// True when the kernel refused for want of privilege (EPERM, EACCES).
    pub fn is_permission_denied(&self) -> bool {
        let os = match self {
            Self::Steering(e) => e.os_error(),
            Self::Xsk(e) => e.os_error().and_then(std::io::Error::raw_os_error),
        };
        matches!(os, Some(libc::EPERM | libc::EACCES))
    }
}

/// The XDP program attached, its subscriptions made, and the socket bound
/// and registered in the XSKMAP. Dropping it detaches the program.
#[derive(Debug)]
pub struct XdpSource {
    steering: Steering,
    socket: XskReceiver,
    admission: Admission,
    vlan: Vlan,
    received: u64,
}

impl XdpSource {
    /// Loads and attaches the program, opens the socket, primes its fill
    /// ring, subscribes the feeds and registers the socket for its queue,
    /// in that order (so that no steered frame finds no frame to land in).
    pub fn open(cfg: &XdpConfig) -> Result<Self, XdpError> {
        let mut steering = Steering::load()?;
        steering.attach(&cfg.iface, cfg.mode)?;
        let mut socket = XskReceiver::open(&cfg.iface, &cfg.xsk)?;
        socket.prime();
        for feed in &cfg.feeds {
            steering.subscribe(feed, cfg.vlan)?;
        }
        steering.register_socket(cfg.xsk.queue, &socket)?;
        let filter = FeedFilter {
            feeds: cfg.feeds.clone(),
        };
        Ok(Self {
            steering,
            socket,
            admission: Admission::new(filter, cfg.checksums),
            vlan: cfg.vlan,
            received: 0,
        })
    }

    /// The mode the program runs in.
    pub fn attached_mode(&self) -> Option<AttachedMode> {
        self.steering.mode()
    }

    /// Why native mode was refused, when it fell back to generic (handed
    /// over once, to be reported).
    pub fn take_native_refused(&mut self) -> Option<SteeringError> {
        self.steering.take_native_refused()
    }

    /// True when the socket is bound in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.socket.zero_copy()
    }

    /// The subscription map, for the control plane to add and remove feeds
    /// while the poller runs (see [`Steering::take_subscriptions`]): a feed
    /// is added to the poller ([`Source::add_feed`]) before it is steered,
    /// and removed from the poller after it is no longer steered.
    pub fn take_subscriptions(&mut self) -> Result<Subscriptions, SteeringError> {
        self.steering.take_subscriptions(self.vlan)
    }

    /// True when the UMEM is on huge pages.
    pub fn huge_pages(&self) -> bool {
        self.socket.huge_pages()
    }
}

impl Source for XdpSource {
    #[inline]
    fn poll<F: FnMut(Arrival<'_>) -> Verdict>(
        &mut self,
        wait: Wait,
        mut f: F,
    ) -> Result<Polled, SourceError> {
        let timeout = match wait {
            Wait::Spin => 0,
            Wait::Sleep(ms) => ms,
        };
        let admission = &mut self.admission;
        let n = self.socket.receive(timeout, |frame, received| {
            if let Some((line, payload)) = admission.admit(frame) {
                f(Arrival {
                    line,
                    payload: Payload::Packet(payload),
                    captured_at: None,
                    received_at: received.map(|ns| RxTime {
                        ns,
                        source: RxSource::XdpSoftware,
                    }),
                });
            }
        })?;
        self.received += n as u64;
        Ok(Polled::Arrivals(n))
    }

    /// The socket, if any, is left to the asker: XDP steers the frames.
    fn add_feed(
        &mut self,
        feed: Feed,
        _socket: &mut Option<FeedSocket>,
    ) -> Result<usize, FeedChangeError> {
        self.admission.add_feed(feed)
    }

    fn remove_feed(
        &mut self,
        group: Ipv4Addr,
        port: u16,
        _socket: &mut Option<FeedSocket>,
    ) -> Result<usize, FeedChangeError> {
        self.admission.remove_feed(group, port)
    }

    fn counters(&self) -> SourceCounters {
        SourceCounters {
            received: self.received,
            xsk: self.socket.stats().ok(),
            xdp: self.steering.counters().ok(),
            ..self.admission.counters()
        }
    }
}

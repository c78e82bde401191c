//! Loading and attaching the XDP steering program (aya), and its maps:
//! subscriptions, the XSKMAP, per-CPU counters.
//!
//! The program is attached through a bpf_link, so it detaches by itself when
//! the process dies, however it dies.

use aya::maps::{HashMap, MapData, PerCpuArray, XskMap};
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use std::os::fd::AsRawFd;
use ticklane_capture::feed::Feed;
use ticklane_xdp::{
    COUNTERS_MAP, Counter, PROGRAM, PROGRAM_NAME, SOCKETS_MAP, SUBSCRIPTIONS_MAP, SubKey, SubValue,
    Vlan,
};

/// Which XDP mode to attach in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpModeRequest {
    /// Native (driver) mode, falling back to generic with a warning.
    Auto,
    /// Native mode or fail.
    Native,
    /// Generic (skb) mode.
    Generic,
}

/// The mode the program runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    /// In the driver.
    Native,
    /// In the kernel's generic path.
    Generic,
}

impl AttachedMode {
    /// Its name in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

/// Why the steering program could not be set up or driven.
#[derive(Debug, thiserror::Error)]
pub enum SteeringError {
    /// The object could not be loaded into the kernel.
    #[error(
        "loading the XDP object into the kernel failed (ticklane needs root or CAP_BPF + \
         CAP_NET_ADMIN, and a kernel with BPF and XDP)"
    )]
    LoadObject(#[source] aya::EbpfError),
    /// The embedded object lacks the program.
    #[error("the embedded XDP object has no XDP program {0}: the build is broken")]
    NoProgram(&'static str),
    /// The verifier or the kernel refused the program.
    #[error(
        "loading the XDP program failed (ticklane needs root or CAP_BPF + CAP_NET_ADMIN, and a \
         kernel with BPF and XDP)"
    )]
    LoadProgram(#[source] aya::programs::ProgramError),
    /// Attaching failed.
    #[error("attaching XDP to {iface} in {mode} mode failed")]
    Attach {
        /// The interface.
        iface: String,
        /// The mode tried.
        mode: &'static str,
        /// What the kernel said.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Another XDP program holds the interface.
    #[error(
        "another XDP program is attached to {iface}: detach it \
         (`ip link set dev {iface} xdp off`) or use another interface"
    )]
    InterfaceBusy {
        /// The interface.
        iface: String,
    },
    /// BPF_PROG_TEST_RUN failed.
    #[error("test run of the XDP program failed")]
    TestRun(#[source] aya::programs::ProgramError),
    /// The embedded object lacks a map.
    #[error("the embedded XDP object has no map {0}: the build is broken")]
    NoMap(&'static str),
    /// A map operation failed.
    #[error("XDP map {map}")]
    Map {
        /// Which map.
        map: &'static str,
        /// What went wrong.
        #[source]
        source: aya::maps::MapError,
    },
}

impl SteeringError {
    /// The OS error number beneath, if the kernel gave one (EPERM for a
    /// missing privilege, EBUSY for a held interface, …).
    pub fn os_error(&self) -> Option<i32> {
        match self {
            Self::InterfaceBusy { .. } => Some(libc::EBUSY),
            other => os_error(other),
        }
    }
}

/// The loaded program and its maps.
#[derive(Debug)]
pub struct Steering {
    ebpf: Ebpf,
    mode: Option<AttachedMode>,
    native_refused: Option<SteeringError>,
}

/// The XDP program's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpCounters(pub [u64; Counter::ALL.len()]);

impl XdpCounters {
    /// One counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0[counter as usize]
    }

    /// Every counter with its value.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.iter().map(|c| (*c, self.get(*c)))
    }
}

/// A map the compiled object should have defined is not there.
fn missing(map: &'static str) -> SteeringError {
    SteeringError::NoMap(map)
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> SteeringError {
    move |source| SteeringError::Map { map, source }
}

impl Steering {
    /// Loads the program into the kernel (not attached yet).
    pub fn load() -> Result<Self, SteeringError> {
        let mut ebpf = EbpfLoader::new()
            .load(PROGRAM)
            .map_err(SteeringError::LoadObject)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(SteeringError::NoProgram(PROGRAM_NAME))?
            .try_into()
            .map_err(|_| SteeringError::NoProgram(PROGRAM_NAME))?;
        prog.load().map_err(SteeringError::LoadProgram)?;
        Ok(Self {
            ebpf,
            mode: None,
            native_refused: None,
        })
    }

    fn program(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Steering::load")
    }

    /// Attaches to `iface`; `Auto` tries native then generic.
    pub fn attach(
        &mut self,
        iface: &str,
        request: XdpModeRequest,
    ) -> Result<AttachedMode, SteeringError> {
        let attempt = |s: &mut Self, mode: XdpMode, name: &'static str| {
            s.program().attach(iface, mode).map(|_| ()).map_err(|e| {
                if os_error(&e) == Some(libc::EBUSY) {
                    SteeringError::InterfaceBusy {
                        iface: iface.to_owned(),
                    }
                } else {
                    SteeringError::Attach {
                        iface: iface.to_owned(),
                        mode: name,
                        source: e,
                    }
                }
            })
        };
        let mode = match request {
            XdpModeRequest::Native => {
                attempt(self, XdpMode::Driver, "native")?;
                AttachedMode::Native
            }
            XdpModeRequest::Generic => {
                attempt(self, XdpMode::Skb, "generic")?;
                AttachedMode::Generic
            }
            XdpModeRequest::Auto => match attempt(self, XdpMode::Driver, "native") {
                Ok(()) => AttachedMode::Native,
                // Another program holds the interface: generic mode would
                // fail the same way, so say so now.
                Err(busy @ SteeringError::InterfaceBusy { .. }) => return Err(busy),
                Err(native) => {
                    attempt(self, XdpMode::Skb, "generic")?;
                    self.native_refused = Some(native);
                    AttachedMode::Generic
                }
            },
        };
        self.mode = Some(mode);
        Ok(mode)
    }

    /// The mode attached in, if attached.
    pub fn mode(&self) -> Option<AttachedMode> {
        self.mode
    }

    /// Why native mode was refused, when `Auto` fell back to generic
    /// (handed over once, to be reported).
    pub fn take_native_refused(&mut self) -> Option<SteeringError> {
        self.native_refused.take()
    }

    fn subs(&mut self) -> Result<HashMap<&mut MapData, SubKey, SubValue>, SteeringError> {
        let map = self
            .ebpf
            .map_mut(SUBSCRIPTIONS_MAP)
            .ok_or_else(|| missing(SUBSCRIPTIONS_MAP))?;
        HashMap::try_from(map).map_err(map_err(SUBSCRIPTIONS_MAP))
    }

    /// Steers the feed's group:port to the sockets from now on: its frames
    /// that carry the tags of `vlan` and come from its source (any, when it
    /// has none); the others are counted and passed to the kernel.
    pub fn subscribe(&mut self, feed: &Feed, vlan: Vlan) -> Result<(), SteeringError> {
        insert_subscription(&mut self.subs()?, feed, vlan)
    }

    /// Stops steering the feed's group:port.
    pub fn unsubscribe(&mut self, feed: &Feed) -> Result<(), SteeringError> {
        remove_subscription(&mut self.subs()?, feed)
    }

    /// Hands the subscription map over to another thread (the control
    /// plane), which then changes the subscriptions while the poller runs:
    /// the map updates are syscalls, made there and not on the poller.
    /// After this, [`Self::subscribe`] and [`Self::unsubscribe`] fail.
    pub fn take_subscriptions(&mut self, vlan: Vlan) -> Result<Subscriptions, SteeringError> {
        let map = self
            .ebpf
            .take_map(SUBSCRIPTIONS_MAP)
            .ok_or_else(|| missing(SUBSCRIPTIONS_MAP))?;
        let map = HashMap::try_from(map).map_err(map_err(SUBSCRIPTIONS_MAP))?;
        Ok(Subscriptions { map, vlan })
    }

    /// Puts an AF_XDP socket in the XSKMAP for receive queue `queue`.
    pub fn register_socket(
        &mut self,
        queue: u32,
        socket: &impl AsRawFd,
    ) -> Result<(), SteeringError> {
        let map = self
            .ebpf
            .map_mut(SOCKETS_MAP)
            .ok_or_else(|| missing(SOCKETS_MAP))?;
        let mut xsks = XskMap::try_from(map).map_err(map_err(SOCKETS_MAP))?;
        xsks.set(queue, socket.as_raw_fd(), 0)
            .map_err(map_err(SOCKETS_MAP))
    }

    /// The counters, summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters, SteeringError> {
        let map = self
            .ebpf
            .map(COUNTERS_MAP)
            .ok_or_else(|| missing(COUNTERS_MAP))?;
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(map_err(COUNTERS_MAP))?;
        let mut out = [0u64; Counter::ALL.len()];
        for (i, c) in out.iter_mut().enumerate() {
            let values = array.get(&(i as u32), 0).map_err(map_err(COUNTERS_MAP))?;
            *c = values.iter().sum();
        }
        Ok(XdpCounters(out))
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN and returns
    /// its verdict (XDP_PASS = 2, XDP_REDIRECT = 4, …).
    pub fn test_run(&mut self, frame: &[u8]) -> Result<u32, SteeringError> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        };
        self.program()
            .test_run(opts)
            .map(|r| r.return_value)
            .map_err(SteeringError::TestRun)
    }
}

/// The XDP program's subscription map, taken out of the program's
/// objects to be changed from another thread than the poller's.
#[derive(Debug)]
pub struct Subscriptions {
    map: HashMap<MapData, SubKey, SubValue>,
    vlan: Vlan,
}

impl Subscriptions {
    /// Steers the feed's frames (on the interface's VLAN, from its source)
    /// to the sockets from now on.
    pub fn insert(&mut self, feed: &Feed) -> Result<(), SteeringError> {
        insert_subscription(&mut self.map, feed, self.vlan)
    }

    /// Passes the feed's frames to the kernel from now on.
    pub fn remove(&mut self, feed: &Feed) -> Result<(), SteeringError> {
        remove_subscription(&mut self.map, feed)
    }
}

fn insert_subscription<M: std::borrow::BorrowMut<MapData>>(
    map: &mut HashMap<M, SubKey, SubValue>,
    feed: &Feed,
    vlan: Vlan,
) -> Result<(), SteeringError> {
    let value = SubValue::new(feed.source.map(|s| s.octets()), vlan);
    map.insert(SubKey::new(feed.group.octets(), feed.port), value, 0)
        .map_err(map_err(SUBSCRIPTIONS_MAP))
}

fn remove_subscription<M: std::borrow::BorrowMut<MapData>>(
    map: &mut HashMap<M, SubKey, SubValue>,
    feed: &Feed,
) -> Result<(), SteeringError> {
    map.remove(&SubKey::new(feed.group.octets(), feed.port))
        .map_err(map_err(SUBSCRIPTIONS_MAP))
}

/// The OS error number behind an error, if any of its causes is an I/O error.
fn os_error(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(code) = c
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Some(code);
        }
        cause = c.source();
    }
    None
}

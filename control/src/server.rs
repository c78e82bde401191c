//! Starting and stopping the control plane: its listeners are bound before
//! it returns (so that a bad address fails the start, with the address),
//! then served by a small tokio runtime on threads of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ticklane_appliance::bus::Event;
use ticklane_appliance::request::Requester;
use ticklane_appliance::stats::StatsReader;
use tokio::sync::oneshot;

use crate::appliance::{Appliance, ApplianceInfo};
use crate::feeds::Feeds;
use crate::line::{self, LineLimits};
use crate::link::Link;
use crate::settings::Key;
use crate::{ControlError, grpc, metrics, proto};

/// The limits every client meets.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest gRPC request taken, in bytes.
    pub max_request: usize,
    /// Largest gRPC response sent (a whole deep book), in bytes.
    pub max_response: usize,
    /// Streams open at once, over all gRPC clients.
    pub max_streams: usize,
    /// Requests at once on one gRPC connection.
    pub per_connection: usize,
    /// A unary gRPC call not answered within this fails (DEADLINE_EXCEEDED).
    pub timeout: Duration,
    /// HTTP/2 keepalive pings every this long; a peer that does not answer
    /// within the same time is dropped.
    pub keepalive: Duration,
    /// The line protocol's limits.
    pub line: LineLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request: 64 << 10,
            max_response: 16 << 20,
            max_streams: 64,
            per_connection: 32,
            timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(20),
            line: LineLimits {
                max_line: 1024,
                idle: Duration::from_secs(60),
                write: Duration::from_secs(5),
                max_clients: 64,
            },
        }
    }
}

/// Where to listen, and how.
#[derive(Debug, Clone, Default)]
pub struct ControlConfig {
    /// gRPC.
    pub grpc: Option<SocketAddr>,
    /// The TCP line protocol.
    pub control: Option<SocketAddr>,
    /// Metrics and health (HTTP).
    pub metrics: Option<SocketAddr>,
    /// The bearer token mutations need (none: mutations are refused).
    pub token: Option<String>,
    /// Limits.
    pub limits: Limits,
}

/// What the appliance hands the control plane.
#[derive(Debug)]
pub struct Parts {
    /// How it receives.
    pub info: ApplianceInfo,
    /// A reader of the poller's stats.
    pub stats: StatsReader,
    /// The asking end of the poller's request ring.
    pub requester: Requester,
    /// The feeds, and what changes them.
    pub feeds: Feeds,
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    app: Arc<Appliance>,
    runtime: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where each listener is bound (the ports chosen, for port 0).
    pub bound: Bound,
}

/// The addresses bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bound {
    /// gRPC.
    pub grpc: Option<SocketAddr>,
    /// The line protocol.
    pub control: Option<SocketAddr>,
    /// Metrics.
    pub metrics: Option<SocketAddr>,
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<std::net::TcpListener, ControlError> {
    let l = std::net::TcpListener::bind(addr).map_err(|source| ControlError::Bind {
        what,
        addr,
        source,
    })?;
    l.set_nonblocking(true)
        .map_err(|source| ControlError::Bind { what, addr, source })?;
    Ok(l)
}

impl ControlPlane {
    /// Adds counters from outside the poller (the audit trail's) to
    /// `GetStats`, the `STATS` line and `/metrics`.
    pub fn add_counters(&self, source: crate::appliance::CounterSource) {
        self.app.add_counters(source);
    }

    /// Binds the listeners and starts serving on `worker_threads` threads.
    pub fn start(
        cfg: ControlConfig,
        parts: Parts,
        worker_threads: usize,
    ) -> Result<Self, ControlError> {
        let grpc_l = cfg.grpc.map(|a| bind("gRPC (--grpc)", a)).transpose()?;
        let line_l = cfg
            .control
            .map(|a| bind("line control (--control)", a))
            .transpose()?;
        let metrics_l = cfg
            .metrics
            .map(|a| bind("metrics (--metrics)", a))
            .transpose()?;
        let local =
            |l: &Option<std::net::TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let bound = Bound {
            grpc: local(&grpc_l),
            control: local(&line_l),
            metrics: local(&metrics_l),
        };
        let link = Link::spawn(parts.requester)?;
        let app = Arc::new(Appliance::new(parts.info, parts.stats, link, parts.feeds));
        app.settings
            .set(Key::MaxStreams, cfg.limits.max_streams as u64);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("ticklane-control")
            .enable_all()
            .build()
            .map_err(ControlError::Runtime)?;
        let handle = runtime.handle().clone();
        let token: Option<Arc<str>> = cfg.token.map(Into::into);
        let limits = cfg.limits;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = app.clone();
        let thread = std::thread::Builder::new()
            .name("ticklane-control".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    if let Some(l) = grpc_l.and_then(|l| tokio::net::TcpListener::from_std(l).ok())
                    {
                        tasks.spawn(serve_grpc(l, served.clone(), token.clone(), limits));
                    }
                    if let Some(l) = line_l.and_then(|l| tokio::net::TcpListener::from_std(l).ok())
                    {
                        tasks.spawn(line::serve(l, served.clone(), token.clone(), limits.line));
                    }
                    if let Some(l) =
                        metrics_l.and_then(|l| tokio::net::TcpListener::from_std(l).ok())
                    {
                        tasks.spawn(metrics::serve(l, served.clone()));
                    }
                    let _ = stopped.await;
                    tasks.shutdown().await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(ControlError::Runtime)?;
        Ok(Self {
            app,
            runtime: handle,
            stop: Some(stop),
            thread: Some(thread),
            bound,
        })
    }

    /// Starts the control plane of `poller` (before it runs): the poller
    /// serves its request ring from now on, and gives it a stats reader of
    /// its own.
    pub fn attach<S: ticklane_appliance::source::Source>(
        poller: &mut ticklane_appliance::poller::Poller<'_, S>,
        cfg: ControlConfig,
        info: ApplianceInfo,
        feeds: Feeds,
        worker_threads: usize,
    ) -> Result<Self, ControlError> {
        let (requester, server) = ticklane_appliance::request::ring();
        poller.serve(server);
        let parts = Parts {
            info,
            stats: poller.stats_reader(),
            requester,
            feeds,
        };
        Self::start(cfg, parts, worker_threads)
    }

    /// The `log_interval` setting, as it is now whenever asked (`None`:
    /// no stats line).
    pub fn log_interval(&self) -> impl Fn() -> Option<Duration> + Send + Sync + 'static {
        let app = self.app.clone();
        move || app.settings.log_interval()
    }

    /// What the bus drain hands every event to (on its thread).
    pub fn forwarder(&self) -> impl FnMut(Event) + Send + 'static {
        let app = self.app.clone();
        move |e| app.publish(e)
    }

    /// Applies again, in the background, the settings the store kept, and
    /// subscribes again the feeds it says were subscribed live before a
    /// restart (once the poller runs, it answers); `report` is told the
    /// outcome of each, in words.
    pub fn restore(&self, report: impl Fn(String) + Send + 'static) {
        let app = self.app.clone();
        self.runtime.spawn(async move {
            for line in app.restore_settings().await {
                report(line);
            }
            let mut feeds = app.feeds().await;
            let stored = match feeds.stored() {
                Ok(stored) => stored,
                Err(e) => return report(format!("warning: {}", e.full())),
            };
            for text in stored {
                let outcome = match crate::feeds::parse(&text) {
                    Ok(feed) => feeds.subscribe(app.link(), feed).await,
                    Err(e) => Err(e),
                };
                report(match outcome {
                    Ok(line) => {
                        format!("{text} subscribed again (as before the restart), line {line}")
                    }
                    Err(ControlError::AlreadySubscribed { .. }) => {
                        format!("{text} is a --feed already")
                    }
                    Err(e) => format!(
                        "warning: {text} (subscribed before the restart): {}",
                        e.full()
                    ),
                });
            }
        });
    }

    /// Stops serving (open connections are dropped).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve_grpc(
    listener: tokio::net::TcpListener,
    app: Arc<Appliance>,
    token: Option<Arc<str>>,
    limits: Limits,
) {
    let service = proto::appliance_server::ApplianceServer::new(grpc::Service::new(
        app,
        token,
        limits.max_request,
    ))
    .max_decoding_message_size(grpc::decoding_limit(limits.max_request))
    .max_encoding_message_size(limits.max_response);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(limits.per_connection)
        .timeout(limits.timeout)
        .http2_keepalive_interval(Some(limits.keepalive))
        .http2_keepalive_timeout(Some(limits.keepalive))
        .max_concurrent_streams(Some(
            limits.max_streams as u32 + limits.per_connection as u32,
        ))
        .tcp_nodelay(true);
    let mut router = builder.add_service(service);
    if let Ok(reflection) = reflection {
        router = router.add_service(reflection);
    }
    // Errors of single connections are tonic's to handle; the listener
    // itself failing ends gRPC service (the other listeners go on).
    let _ = router.serve_with_incoming(incoming).await;
}

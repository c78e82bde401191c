//! The `ticklane.v1.Appliance` gRPC service.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use ticklane_appliance::bus::{Event, Topic, TradeKind};
use ticklane_appliance::request::{BookSnapshot, Stock};
use ticklane_appliance::session::SessionEvent;
use ticklane_appliance::stats::Snapshot;

use crate::ControlError;
use crate::appliance::{Appliance, stock_of};
use crate::counters::{self, session_name};
use crate::feeds;
use crate::proto::{self, appliance_server};
use crate::settings::Key;

/// How long a `GetStatus` answer is served again before it is built anew
/// (the stats it shows are published every 100 ms anyway): a flood of
/// status calls costs the copy of one message each, not a stats read, a
/// lock on the feeds and a build.
const STATUS_FRESH: Duration = Duration::from_millis(10);

/// The service.
#[derive(Debug, Clone)]
pub struct Service {
    app: Arc<Appliance>,
    token: Option<Arc<str>>,
    max_request: usize,
    status: Arc<Mutex<Option<(Instant, proto::Status)>>>,
}

impl Service {
    /// Serves `app`; mutations need `token`; requests of at most
    /// `max_request` bytes (streams at once: the `max_streams` setting).
    pub fn new(app: Arc<Appliance>, token: Option<Arc<str>>, max_request: usize) -> Self {
        Self {
            app,
            token,
            max_request,
            status: Arc::default(),
        }
    }

    /// The status, built at most [`STATUS_FRESH`] ago.
    async fn status(&self) -> proto::Status {
        let lock = || {
            self.status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let cached = lock()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < STATUS_FRESH)
            .map(|(_, s)| s.clone());
        if let Some(s) = cached {
            return s;
        }
        // Boxed: the future of every call stays small, the rare rebuild
        // has its own.
        let status = Box::pin(self.build_status()).await;
        *lock() = Some((Instant::now(), status.clone()));
        status
    }

    async fn build_status(&self) -> proto::Status {
        let (feeds, snap) = feed_list(&self.app).await;
        let info = &self.app.info;
        proto::Status {
            version: info.version.clone(),
            uptime_ns: snap.uptime_ns,
            interface: info.interface.clone(),
            queue: info.queue,
            mode: info.mode.clone(),
            xdp_mode: info.xdp_mode.clone(),
            bind: info.bind.clone(),
            stale: snap.is_stale(),
            sessions: snap
                .sessions()
                .iter()
                .map(|s| proto::SessionState {
                    session: session_name(&s.session),
                    next_seq: s.next_seq,
                    stale: s.stale,
                    ended: s.ended,
                    known_end: s.known_end,
                })
                .collect(),
            feeds,
            rx_timestamps: counters::rx_timestamps(&snap).into(),
        }
    }

    /// Refuses a request above the size limit with RESOURCE_EXHAUSTED (tonic
    /// itself refuses one above [`decoding_limit`] with OUT_OF_RANGE before
    /// decoding it).
    fn within_limit<T: prost::Message>(&self, request: &Request<T>) -> Result<(), ControlError> {
        let len = request.get_ref().encoded_len();
        if len > self.max_request {
            return Err(ControlError::Exhausted(format!(
                "a request of {len} bytes: the limit is {} bytes (no valid request comes near it)",
                self.max_request
            )));
        }
        Ok(())
    }

    /// Refuses a mutation without the right bearer token.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), ControlError> {
        let Some(token) = &self.token else {
            return Err(ControlError::FailedPrecondition(
                "this appliance was started without --token-file: Subscribe, Unsubscribe and \
                 SetConfig are disabled (restart it with --token-file FILE)"
                    .into(),
            ));
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => Err(ControlError::Unauthenticated(
                "Subscribe, Unsubscribe and SetConfig need the appliance's token: send the \
                 metadata 'authorization: Bearer TOKEN' (ticklane ctl --token-file FILE)"
                    .into(),
            )),
            Some(t) if token_matches(t, token) => Ok(()),
            Some(_) => Err(ControlError::Unauthenticated(
                "wrong token: use the one in the appliance's --token-file".into(),
            )),
        }
    }

    /// A stream of `U`'s events (only those of the stock asked for, if
    /// one was), with in-stream notices of what the client lost.
    async fn stream<U: Update>(
        &self,
        request: Request<proto::StreamRequest>,
    ) -> Result<Response<UpdateStream<U>>, Status> {
        self.within_limit(&request)?;
        let permit = self.app.stream_slot()?;
        let proto::StreamRequest {
            stock,
            disconnect_when_behind,
        } = request.into_inner();
        let only = if stock.is_empty() {
            None
        } else {
            Some(self.app.locate(&stock).await?)
        };
        let app = self.app.clone();
        let events = BroadcastStream::new(self.app.subscribe_events(U::TOPIC));
        let out = events.filter_map(move |e| {
            let _held = &permit;
            match e {
                Ok(event) => {
                    let (locate, update) = U::of(&event)?;
                    let wanted = match (only, locate) {
                        (Some(only), Some(locate)) => only == locate,
                        _ => true,
                    };
                    wanted.then_some(Ok(update))
                }
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    app.count_stream_dropped(U::TOPIC, n);
                    Some(if disconnect_when_behind {
                        // The stream ends with this status.
                        Err(Status::resource_exhausted(format!(
                            "this client fell {n} events behind its buffer of {}: disconnected, \
                             as it asked (disconnect_when_behind); read faster or filter by stock",
                            crate::appliance::STREAM_BUFFER
                        )))
                    } else {
                        Ok(U::dropped(n))
                    })
                }
            }
        });
        Ok(Response::new(Box::pin(out)))
    }
}

/// An update of one stream: an event of its topic, or the notice of the
/// events the client lost.
trait Update: Send + 'static {
    /// The bus topic it carries.
    const TOPIC: Topic;
    /// An event as an update, with the stock it concerns (none: every
    /// stock); `None` for an event of another topic.
    fn of(event: &Event) -> Option<(Option<u16>, Self)>
    where
        Self: Sized;
    /// The notice that `count` events were lost.
    fn dropped(count: u64) -> Self;
}

impl Update for proto::BboUpdate {
    const TOPIC: Topic = Topic::Bbo;
    fn of(event: &Event) -> Option<(Option<u16>, Self)> {
        let Event::Bbo(b) = event else { return None };
        let bbo = proto::Bbo {
            locate: u32::from(b.locate),
            timestamp: b.timestamp,
            bid_price: b.bid.0,
            bid_shares: b.bid.1,
            ask_price: b.ask.0,
            ask_shares: b.ask.1,
            session: session_name(&b.session),
            seq: b.seq,
        };
        let update = Some(proto::bbo_update::Update::Bbo(bbo));
        Some((Some(b.locate), Self { update }))
    }
    fn dropped(count: u64) -> Self {
        let update = Some(proto::bbo_update::Update::Dropped(proto::Dropped { count }));
        Self { update }
    }
}

impl Update for proto::TradeUpdate {
    const TOPIC: Topic = Topic::Trades;
    fn of(event: &Event) -> Option<(Option<u16>, Self)> {
        let Event::Trade(t) = event else { return None };
        let trade = proto::Trade {
            locate: u32::from(t.locate),
            timestamp: t.timestamp,
            price: t.price,
            shares: t.shares,
            match_number: t.match_number,
            kind: trade_kind(t.kind).into(),
            session: session_name(&t.session),
            seq: t.seq,
        };
        let update = Some(proto::trade_update::Update::Trade(trade));
        Some((Some(t.locate), Self { update }))
    }
    fn dropped(count: u64) -> Self {
        let update = Some(proto::trade_update::Update::Dropped(proto::Dropped {
            count,
        }));
        Self { update }
    }
}

impl Update for proto::VwapUpdate {
    const TOPIC: Topic = Topic::Vwap;
    fn of(event: &Event) -> Option<(Option<u16>, Self)> {
        let Event::Vwap(v) = event else { return None };
        let vwap = proto::Vwap {
            locate: u32::from(v.locate),
            timestamp: v.timestamp,
            vwap: u64::from(v.vwap),
            shares: v.shares,
            trades: u64::from(v.trades),
        };
        let update = Some(proto::vwap_update::Update::Vwap(vwap));
        Some((Some(v.locate), Self { update }))
    }
    fn dropped(count: u64) -> Self {
        let update = Some(proto::vwap_update::Update::Dropped(proto::Dropped {
            count,
        }));
        Self { update }
    }
}

impl Update for proto::SessionUpdate {
    const TOPIC: Topic = Topic::Session;
    /// Session events concern every stock: a stock filter keeps them all.
    fn of(event: &Event) -> Option<(Option<u16>, Self)> {
        let Event::Session(e) = event else {
            return None;
        };
        let update = Some(proto::session_update::Update::Event(session_event(e)));
        Some((None, Self { update }))
    }
    fn dropped(count: u64) -> Self {
        let update = Some(proto::session_update::Update::Dropped(proto::Dropped {
            count,
        }));
        Self { update }
    }
}

/// The largest message tonic decodes at all, for requests of at most
/// `max_request` bytes: room to decode an oversized request and refuse it
/// with RESOURCE_EXHAUSTED and a message.
pub fn decoding_limit(max_request: usize) -> usize {
    max_request.saturating_mul(16).max(1 << 20)
}

/// The stream of one topic's updates to a client.
type UpdateStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Compares without stopping at the first difference.
pub(crate) fn token_matches(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The wire form of a book snapshot.
pub fn book_message(b: &BookSnapshot) -> proto::Book {
    let levels = |side: &[ticklane_appliance::book::Level]| {
        side.iter()
            .map(|l| proto::Level {
                price: l.price,
                shares: l.shares,
                orders: l.orders,
            })
            .collect()
    };
    proto::Book {
        symbol: String::from_utf8_lossy(b.symbol()).into_owned(),
        locate: u32::from(b.locate),
        session: session_name(&b.session),
        seq: b.seq,
        stale: b.stale,
        bids: levels(&b.bids),
        asks: levels(&b.asks),
        bid_depth: u32::try_from(b.bid_depth).unwrap_or(u32::MAX),
        ask_depth: u32::try_from(b.ask_depth).unwrap_or(u32::MAX),
    }
}

impl proto::Book {
    /// The canonical book line (`docs/formats.md`), as `ticklane book`
    /// prints it, newline included.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 24 * (self.bids.len() + self.asks.len()));
        ticklane_capture::canonical::write_book(
            &mut out,
            self.symbol.as_bytes(),
            self.bids.iter().map(|l| (l.price, l.shares)),
            self.asks.iter().map(|l| (l.price, l.shares)),
        );
        out
    }
}

fn trade_kind(k: TradeKind) -> &'static str {
    match k {
        TradeKind::Executed => "execution",
        TradeKind::ExecutedWithPrice => "execution_with_price",
        TradeKind::Hidden => "hidden",
        TradeKind::Cross => "cross",
    }
}

/// The wire form of a session event.
pub fn session_event(e: &SessionEvent) -> proto::SessionEvent {
    let ev = |kind: &str, from: u64, end: u64| proto::SessionEvent {
        kind: kind.into(),
        from,
        end,
        ..proto::SessionEvent::default()
    };
    match *e {
        SessionEvent::GapDetected { from, end } => ev("gap_detected", from, end),
        SessionEvent::GapFilled { from, end } => ev("gap_filled", from, end),
        SessionEvent::Unrecoverable { from, end } => ev("unrecoverable", from, end),
        SessionEvent::Stale => ev("stale", 0, 0),
        SessionEvent::Fresh => ev("fresh", 0, 0),
        SessionEvent::EndOfSession { next_seq } => ev("end_of_session", 0, next_seq),
        SessionEvent::NewSession { session } => proto::SessionEvent {
            session: session_name(&session),
            ..ev("new_session", 0, 0)
        },
        SessionEvent::LineDown { line } | SessionEvent::LineUp { line } => proto::SessionEvent {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            ..ev(
                if matches!(e, SessionEvent::LineDown { .. }) {
                    "line_down"
                } else {
                    "line_up"
                },
                0,
                0,
            )
        },
    }
}

#[tonic::async_trait]
impl appliance_server::Appliance for Service {
    async fn get_status(
        &self,
        _: Request<proto::GetStatusRequest>,
    ) -> Result<Response<proto::Status>, Status> {
        Ok(Response::new(self.status().await))
    }

    async fn get_stats(
        &self,
        _: Request<proto::GetStatsRequest>,
    ) -> Result<Response<proto::Stats>, Status> {
        let (snap, counters) = self.app.counters().await;
        let source = counters::rx_timestamps(&snap);
        Ok(Response::new(proto::Stats {
            uptime_ns: snap.uptime_ns,
            counters: counters
                .into_iter()
                .map(|c| proto::Counter {
                    name: c.name,
                    value: c.value,
                    feed: c.feed,
                    session: c.session,
                    help: c.help.into(),
                })
                .collect(),
            histograms: counters::histograms(&snap)
                .iter()
                .map(|h| histogram_message(h, source))
                .collect(),
            session_histograms: counters::session_histograms(&snap)
                .into_iter()
                .map(|h| proto::SessionHistogram {
                    name: h.name.into(),
                    unit: h.unit.into(),
                    feed: String::new(),
                    session: h.session,
                    help: h.help.into(),
                    bounds: h.bounds,
                    counts: h.counts,
                })
                .collect(),
        }))
    }

    async fn list_feeds(
        &self,
        _: Request<proto::ListFeedsRequest>,
    ) -> Result<Response<proto::FeedList>, Status> {
        Ok(Response::new(proto::FeedList {
            feeds: feed_list(&self.app).await.0,
        }))
    }

    async fn subscribe(
        &self,
        request: Request<proto::FeedRequest>,
    ) -> Result<Response<proto::FeedChange>, Status> {
        self.within_limit(&request)?;
        self.authorize(&request)?;
        let feed = feeds::parse(&request.get_ref().feed)?;
        let line = self
            .app
            .feeds()
            .await
            .subscribe(self.app.link(), feed)
            .await?;
        Ok(Response::new(proto::FeedChange {
            feed: feeds::name(feed.group, feed.port),
            line: line as u32,
        }))
    }

    async fn unsubscribe(
        &self,
        request: Request<proto::FeedRequest>,
    ) -> Result<Response<proto::FeedChange>, Status> {
        self.within_limit(&request)?;
        self.authorize(&request)?;
        let feed = feeds::parse(&request.get_ref().feed)?;
        let line = self
            .app
            .feeds()
            .await
            .unsubscribe(self.app.link(), feed.group, feed.port)
            .await?;
        Ok(Response::new(proto::FeedChange {
            feed: feeds::name(feed.group, feed.port),
            line: line as u32,
        }))
    }

    async fn get_book(
        &self,
        request: Request<proto::GetBookRequest>,
    ) -> Result<Response<proto::Book>, Status> {
        use proto::get_book_request::Stock as Which;
        self.within_limit(&request)?;
        let r = request.into_inner();
        let stock = match r.stock {
            Some(Which::Symbol(s)) => stock_of(&s)?,
            Some(Which::Locate(l)) => Stock::Locate(u16::try_from(l).map_err(|_| {
                ControlError::InvalidArgument(format!("locate {l} is not a stock locate (0-65535)"))
            })?),
            None => {
                return Err(ControlError::InvalidArgument(
                    "give the stock: its symbol or its locate code".into(),
                )
                .into());
            }
        };
        let depth = (r.depth > 0).then_some(r.depth as usize);
        let snap = self.app.book(stock, depth).await?;
        Ok(Response::new(book_message(&snap)))
    }

    type StreamBboStream = UpdateStream<proto::BboUpdate>;

    async fn stream_bbo(
        &self,
        request: Request<proto::StreamRequest>,
    ) -> Result<Response<Self::StreamBboStream>, Status> {
        self.stream(request).await
    }

    type StreamTradesStream = UpdateStream<proto::TradeUpdate>;

    async fn stream_trades(
        &self,
        request: Request<proto::StreamRequest>,
    ) -> Result<Response<Self::StreamTradesStream>, Status> {
        self.stream(request).await
    }

    type StreamVwapStream = UpdateStream<proto::VwapUpdate>;

    async fn stream_vwap(
        &self,
        request: Request<proto::StreamRequest>,
    ) -> Result<Response<Self::StreamVwapStream>, Status> {
        self.stream(request).await
    }

    type StreamSessionEventsStream = UpdateStream<proto::SessionUpdate>;

    async fn stream_session_events(
        &self,
        request: Request<proto::StreamRequest>,
    ) -> Result<Response<Self::StreamSessionEventsStream>, Status> {
        self.stream(request).await
    }

    async fn list_config(
        &self,
        _: Request<proto::ListConfigRequest>,
    ) -> Result<Response<proto::ConfigList>, Status> {
        let stored = self.app.feeds().await.store().is_some();
        Ok(Response::new(proto::ConfigList {
            entries: Key::ALL
                .iter()
                .map(|k| config_entry(&self.app, *k, stored))
                .collect(),
        }))
    }

    async fn get_config(
        &self,
        request: Request<proto::ConfigKey>,
    ) -> Result<Response<proto::ConfigEntry>, Status> {
        self.within_limit(&request)?;
        let key = Key::parse(&request.get_ref().key)?;
        let stored = self.app.feeds().await.store().is_some();
        Ok(Response::new(config_entry(&self.app, key, stored)))
    }

    async fn set_config(
        &self,
        request: Request<proto::SetConfigRequest>,
    ) -> Result<Response<proto::ConfigEntry>, Status> {
        self.within_limit(&request)?;
        self.authorize(&request)?;
        let r = request.get_ref();
        let key = Key::parse(&r.key)?;
        let value = key.parse_value(&r.value)?;
        let stored = self.app.set_config(key, value).await?;
        Ok(Response::new(config_entry(&self.app, key, stored)))
    }
}

/// A setting as the wire shows it.
fn config_entry(app: &Appliance, key: Key, stored: bool) -> proto::ConfigEntry {
    proto::ConfigEntry {
        key: key.name().into(),
        value: key.format(app.settings.get(key)),
        default: key.format(key.default_value()),
        help: key.help().into(),
        stored,
    }
}

/// The wire form of a histogram, with the poller's own buckets (so that a
/// client can take the difference of two and read quantiles from it at
/// their resolution).
fn histogram_message(h: &counters::NamedHistogram, source: &str) -> proto::Histogram {
    let hist = &h.histogram;
    let buckets = hist
        .cumulative()
        .map(|(bound, count)| proto::Bucket {
            le_ns: bound.unwrap_or(0),
            count,
        })
        .collect();
    let q = |q: f64| hist.quantile(q).unwrap_or(0);
    proto::Histogram {
        name: h.name.into(),
        help: h.help.into(),
        count: hist.count(),
        sum_ns: hist.sum(),
        buckets,
        p50_ns: q(0.5),
        p99_ns: q(0.99),
        p999_ns: q(0.999),
        source: if h.name == "wire_to_handler" {
            source.into()
        } else {
            String::new()
        },
    }
}

/// The feeds with their lines' counters, and the stats snapshot they are
/// from (read once the feeds are locked: no snapshot is held across an
/// await, so that the futures of the calls stay small).
pub async fn feed_list(app: &Appliance) -> (Vec<proto::Feed>, Box<Snapshot>) {
    let feeds = app.feeds().await;
    let snap = Box::new(app.snapshot());
    let list = feeds
        .entries()
        .map(|e| {
            let lines = snap
                .sessions()
                .iter()
                .filter_map(|s| s.lines().get(e.line).copied());
            let (mut packets, mut duplicates, mut gaps, mut down) = (0, 0, 0, false);
            for l in lines {
                packets += l.packets;
                duplicates += l.duplicates;
                gaps += l.gaps;
                down |= l.down;
            }
            proto::Feed {
                feed: feeds::name(e.feed.group, e.feed.port),
                source: e.feed.source.map(|s| s.to_string()).unwrap_or_default(),
                line: e.line as u32,
                packets,
                duplicates,
                gaps,
                down,
            }
        })
        .collect();
    (list, snap)
}

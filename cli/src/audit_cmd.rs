//! `ticklane audit` and the audit options of `ticklane run`.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use ticklane_appliance::bus::BusConfig;
use ticklane_audit::fill::FillConfig;
use ticklane_audit::journal::{self, AckState};
use ticklane_audit::query::{
    self, Aggregate, Aggregated, Direction, OrderBy, Query, StockTotals, Stored,
};
use ticklane_audit::shipper::unacknowledged;
use ticklane_audit::store::{Flavor, MessageRow, Store, StoreConfig};
use ticklane_audit::verify::{self, Differences, Range};
use ticklane_capture::canonical as json;
use ticklane_capture::feed::{FeedDecoder, FeedSink, Location, Problem};
use ticklane_protocols::itch::{self, MessageRef};
use ticklane_protocols::moldudp64::{Packet, Session};

use super::GroupPort;

/// The audit trail: set up ClickHouse, query, count, list gaps, verify.
///
/// The audit is read from ClickHouse (--clickhouse URL) or, with no server,
/// from the local journal that `ticklane run --audit-dir DIR` writes
/// (--journal DIR). Both give the same answers.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Create the database and tables; idempotent. ClickHouse 22 and later
    /// (by `SELECT version()`) get deploy/clickhouse/schema-modern.sql
    /// (deduplication tokens), older servers such as 18.16 schema.sql.
    Init(InitArgs),
    /// Print the audited messages, ordered by session and sequence number.
    Query(QueryArgs),
    /// Counts: messages, sessions, gaps, duplicates, journal size and what is not shipped yet.
    Stats(SourceArgs),
    /// The delivered ranges that are not in the audit (exact bounds).
    Gaps(SourceArgs),
    /// Check that every message of a capture is in the audit exactly once and nothing else is.
    Verify(VerifyArgs),
}

/// How to reach ClickHouse.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServerArgs {
    /// ClickHouse HTTP URL, http://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub(crate) clickhouse: Option<String>,
    /// ClickHouse user (default: the server's default user).
    #[arg(long, value_name = "USER", requires = "clickhouse")]
    pub(crate) clickhouse_user: Option<String>,
    /// File holding the ClickHouse password (one line).
    #[arg(long, value_name = "FILE", requires = "clickhouse")]
    pub(crate) clickhouse_password_file: Option<PathBuf>,
    /// Seconds to wait for ClickHouse's answer to a batch or a query before
    /// the attempt counts as failed (a batch is then asked about before it
    /// is sent again).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub(crate) clickhouse_timeout: f64,
}

impl ServerArgs {
    /// The store, when --clickhouse was given.
    pub(crate) fn store(&self) -> anyhow::Result<Option<Store>> {
        let Some(url) = &self.clickhouse else {
            return Ok(None);
        };
        let mut cfg = StoreConfig::new(url);
        if !(self.clickhouse_timeout > 0.0 && self.clickhouse_timeout.is_finite()) {
            bail!("--clickhouse-timeout must be a number of seconds above 0");
        }
        cfg.end_timeout = std::time::Duration::from_secs_f64(self.clickhouse_timeout);
        cfg.send_timeout = cfg.send_timeout.min(cfg.end_timeout);
        cfg.user = self.clickhouse_user.clone();
        if let Some(f) = &self.clickhouse_password_file {
            let p = std::fs::read_to_string(f)
                .with_context(|| format!("reading the password file {}", f.display()))?;
            cfg.password = Some(p.trim_end_matches(['\n', '\r']).to_owned());
        }
        Ok(Some(Store::new(cfg)?))
    }
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the schema's statements instead of applying them (no server
    /// needed): --modern for ClickHouse 22 and later, else the 18.16 one.
    #[arg(long, conflicts_with = "clickhouse")]
    print_sql: bool,
    /// With --print-sql: the modern schema.
    #[arg(long, requires = "print_sql")]
    modern: bool,
}

/// Where the audit is read from.
#[derive(Debug, clap::Args)]
#[group(id = "source", required = true, multiple = false, args = ["clickhouse", "journal"])]
struct SourceArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The journal directory of `ticklane run --audit-dir` (no server needed).
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// Print the answer as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The canonical decode lines (`ticklane decode`'s format).
    Jsonl,
    /// Aligned columns.
    Table,
    /// Comma-separated values with a header line.
    Csv,
}

/// `audit query`: a typed query (ticklane_audit::query), the same on the
/// journal and on ClickHouse.
#[derive(Debug, clap::Args)]
struct QueryArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Only this session.
    #[arg(long)]
    session: Option<String>,
    /// From this sequence number.
    #[arg(long)]
    from_seq: Option<u64>,
    /// Up to this sequence number (inclusive).
    #[arg(long)]
    to_seq: Option<u64>,
    /// Received (journaled) at or after this time: UTC
    /// YYYY-MM-DDTHH:MM:SS[.fraction][Z], or ns since the Unix epoch.
    #[arg(long, value_name = "TIME", value_parser = utc_ns)]
    from_time: Option<u64>,
    /// Received before this time (exclusive), as --from-time.
    #[arg(long, value_name = "TIME", value_parser = utc_ns)]
    to_time: Option<u64>,
    /// Exchange timestamp at or after: HH:MM:SS[.fraction], or ns since midnight.
    #[arg(long, value_name = "TIME", value_parser = day_ns)]
    from_exchange_time: Option<u64>,
    /// Exchange timestamp before (exclusive), as --from-exchange-time.
    #[arg(long, value_name = "TIME", value_parser = day_ns)]
    to_exchange_time: Option<u64>,
    /// Only this stock: the messages of its locate code (executions and
    /// cancels included, which carry no symbol).
    #[arg(long)]
    stock: Option<String>,
    /// Only these message types, e.g. A,E,X.
    #[arg(long = "type", value_delimiter = ',', value_parser = message_type)]
    types: Vec<u8>,
    /// Only messages of this order reference number (the original one of a U).
    #[arg(long, value_name = "N")]
    order_ref: Option<u64>,
    /// Order of the messages (ties by session and seq): seq (session, seq),
    /// received (journal time) or exchange-time (the ITCH timestamp).
    #[arg(long, value_enum, default_value = "seq", conflicts_with = "aggregate")]
    order_by: OrderKey,
    /// Largest first.
    #[arg(long, conflicts_with = "aggregate")]
    desc: bool,
    /// At most this many messages.
    #[arg(long, conflicts_with = "aggregate")]
    limit: Option<u64>,
    /// Instead of the messages, an aggregate of them: count; count-by-type;
    /// volume (per session and stock: executions E, C, P, Q and executed
    /// shares); vwap (per session and stock, over the prints that carry
    /// their price, C, P and Q: shares, notional, VWAP in dollars).
    #[arg(long, value_enum, value_name = "WHAT")]
    aggregate: Option<AggregateArg>,
    /// Output format (with --aggregate, jsonl prints one JSON object a line).
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Print the SQL sent to ClickHouse (values bound) and exit.
    #[arg(long)]
    print_sql: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OrderKey {
    Seq,
    Received,
    ExchangeTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AggregateArg {
    Count,
    CountByType,
    Volume,
    Vwap,
}

/// Seconds of a `HH:MM:SS[.fraction]`, in ns.
fn clock_ns(s: &str) -> Option<u64> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || h > 23 || m > 59 || sec > 60 || frac.len() > 9 {
        return None;
    }
    let mut nanos = 0;
    for (i, d) in frac.bytes().enumerate() {
        nanos += u64::from(d.checked_sub(b'0').filter(|d| *d < 10)?) * 10u64.pow(8 - i as u32);
    }
    Some(((h * 60 + m) * 60 + sec) * 1_000_000_000 + nanos)
}

fn day_ns(s: &str) -> Result<u64, String> {
    s.parse()
        .ok()
        .or_else(|| clock_ns(s))
        .ok_or_else(|| format!("'{s}' is not HH:MM:SS[.fraction] or ns since midnight"))
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy as i64;
    era * 146_097 + doe - 719_468
}

fn utc_ns(s: &str) -> Result<u64, String> {
    let bad =
        || format!("'{s}' is not YYYY-MM-DDTHH:MM:SS[.fraction][Z] (UTC) or ns since the epoch");
    if let Ok(ns) = s.parse() {
        return Ok(ns);
    }
    let (date, clock) = s
        .trim_end_matches('Z')
        .split_once(['T', ' '])
        .ok_or_else(bad)?;
    let mut ymd = date.split('-').map(|p| p.parse::<u64>().ok());
    let (y, m, d) = (
        ymd.next().flatten().ok_or_else(bad)?,
        ymd.next().flatten().ok_or_else(bad)?,
        ymd.next().flatten().ok_or_else(bad)?,
    );
    if ymd.next().is_some()
        || !(1970..=2500).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        return Err(bad());
    }
    let days = u64::try_from(days_from_civil(y as i64, m, d)).map_err(|_| bad())?;
    Ok(days * 86_400_000_000_000 + clock_ns(clock).ok_or_else(bad)?)
}

fn message_type(s: &str) -> Result<u8, String> {
    match s.as_bytes() {
        [t] if itch::parse(&[*t]) != Err(itch::ItchError::UnknownType(*t)) => Ok(*t),
        _ => Err(format!(
            "'{s}' is not an ITCH 5.0 message type (one letter, e.g. A, E, X)"
        )),
    }
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The capture that was sent (pcap, pcapng).
    capture: PathBuf,
    #[command(flatten)]
    source: SourceArgs,
    /// Only these feeds of the capture (GROUP:PORT[@SOURCE], repeatable).
    #[arg(long = "feed", value_name = "GROUP:PORT[@SOURCE]")]
    feeds: Vec<GroupPort>,
}

pub(crate) fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        AuditCommand::Init(a) => init(a),
        AuditCommand::Query(q) => query(q),
        AuditCommand::Stats(s) => stats(s),
        AuditCommand::Gaps(s) => gaps(s),
        AuditCommand::Verify(v) => verify(v),
    }
}

/// Runs a future on a runtime of this thread.
pub(crate) fn block_on<T>(f: impl Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f))
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    if args.print_sql {
        let flavor = if args.modern {
            Flavor::Modern
        } else {
            Flavor::Legacy
        };
        for stmt in ticklane_audit::store::statements(flavor.schema()) {
            println!("{stmt}\n;");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(store) = args.server.store()? else {
        bail!("give --clickhouse URL (the journal needs no set-up), or --print-sql");
    };
    let (version, flavor, n) = block_on(async {
        let v = store.version().await?;
        let f = store.flavor().await?;
        let n = store.init().await?;
        Ok::<_, ticklane_audit::store::StoreError>((v, f, n))
    })??;
    let schema = match flavor {
        Flavor::Legacy => "schema.sql",
        Flavor::Modern => "schema-modern.sql, deduplication tokens",
    };
    println!(
        "ticklane audit init: {n} statements applied on ClickHouse {version} at {} ({schema})",
        store.url()
    );
    Ok(ExitCode::SUCCESS)
}

/// The audited messages of `q`, in its order, from either source.
fn messages(
    source: &SourceArgs,
    q: &Query,
    mut each: impl FnMut(&Stored) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if let Some(dir) = &source.journal {
        for m in q.run_journal(&read_journal(dir)?) {
            each(&m)?;
        }
        return Ok(());
    }
    let store = source
        .server
        .store()?
        .context("give --clickhouse URL or --journal DIR")?;
    let mut failure = None;
    block_on(q.run_store(&store, |m| {
        if failure.is_none()
            && let Err(e) = each(&m)
        {
            failure = Some(e);
        }
    }))??;
    failure.map_or(Ok(()), Err)
}

fn read_journal(dir: &Path) -> anyhow::Result<query::JournalView> {
    if !dir.is_dir() {
        bail!(
            "{} is not a journal directory (give ticklane run's --audit-dir)",
            dir.display()
        );
    }
    let view = query::read_journal(dir)?;
    if view.recovery.torn_segments > 0 {
        eprintln!(
            "ticklane audit: warning: {} journal segment(s) end inside a record: {} bytes skipped (first at segment {} byte {})",
            view.recovery.torn_segments,
            view.recovery.bytes_dropped,
            view.recovery.first_at.map_or(0, |p| p.segment),
            view.recovery.first_at.map_or(0, |p| p.offset)
        );
    }
    if view.torn_tail > 0 {
        eprintln!(
            "ticklane audit: warning: the last journal segment ends with {} bytes of a torn record (cut when the journal is next opened)",
            view.torn_tail
        );
    }
    Ok(view)
}

impl QueryArgs {
    fn query(&self) -> Query {
        let mut q = Query::messages()
            .seq(self.from_seq, self.to_seq)
            .received(self.from_time, self.to_time)
            .exchange_time(self.from_exchange_time, self.to_exchange_time)
            .types(&self.types)
            .order_by(
                match self.order_by {
                    OrderKey::Seq => OrderBy::Seq,
                    OrderKey::Received => OrderBy::Received,
                    OrderKey::ExchangeTime => OrderBy::ExchangeTime,
                },
                if self.desc {
                    Direction::Desc
                } else {
                    Direction::Asc
                },
            );
        if let Some(s) = &self.session {
            q = q.session(s.as_bytes());
        }
        if let Some(s) = &self.stock {
            q = q.stock(s.as_bytes());
        }
        if let Some(r) = self.order_ref {
            q = q.order_reference(r);
        }
        if let Some(l) = self.limit {
            q = q.limit(l);
        }
        q
    }
}

fn query(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let q = args.query();
    let aggregate = args.aggregate.map(|a| {
        q.clone().aggregate(match a {
            AggregateArg::Count => Aggregate::Count,
            AggregateArg::CountByType => Aggregate::CountByType,
            AggregateArg::Volume | AggregateArg::Vwap => Aggregate::ByStock,
        })
    });
    if args.print_sql {
        let sql = aggregate.as_ref().map_or_else(|| q.sql(), |a| a.sql());
        println!("{}", sql.render());
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let result = match (&aggregate, args.aggregate) {
        (Some(a), Some(which)) => {
            let answer = match &args.source.journal {
                Some(dir) => a.run_journal(&read_journal(dir)?),
                None => {
                    let store = args
                        .source
                        .server
                        .store()?
                        .context("give --clickhouse URL or --journal DIR")?;
                    block_on(a.run_store(&store))??
                }
            };
            write_aggregate(&mut out, &answer, which, args.format)
        }
        _ => write_messages(&mut out, args, &q),
    };
    match result.and_then(|()| out.flush().map_err(Into::into)) {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        r => r.map(|()| ExitCode::SUCCESS),
    }
}

fn write_messages(out: &mut impl Write, args: &QueryArgs, q: &Query) -> anyhow::Result<()> {
    let mut line = Vec::with_capacity(512);
    if args.format != Format::Jsonl {
        write_cells(&mut line, &COLUMNS.map(|(name, _)| name), args.format)?;
        out.write_all(&line)?;
    }
    messages(&args.source, q, |m| {
        line.clear();
        match args.format {
            Format::Jsonl => match itch::parse(&m.raw) {
                Ok(parsed) => json::write_message(&mut line, &m.session, m.seq, &parsed),
                Err(e) => bail!(
                    "the audit holds a message that does not parse ({e}) at session {} seq {}",
                    String::from_utf8_lossy(&m.session),
                    m.seq
                ),
            },
            Format::Csv | Format::Table => {
                let r = MessageRow::new(&m.session, m.seq, m.journaled_ns, &m.raw);
                write_cells(&mut line, &cells(&r), args.format)?;
            }
        }
        out.write_all(&line)?;
        Ok(())
    })
}

/// An aggregate's answer: a JSON object a line, or csv/table rows.
fn write_aggregate(
    out: &mut impl Write,
    answer: &Aggregated,
    which: AggregateArg,
    format: Format,
) -> anyhow::Result<()> {
    let (header, rows): (Vec<&str>, Vec<Vec<serde_json::Value>>) = match answer {
        Aggregated::Count(n) => (vec!["messages"], vec![vec![(*n).into()]]),
        Aggregated::ByType(t) => (
            vec!["type", "messages"],
            t.iter()
                .map(|t| vec![text(&t.r#type).into(), t.messages.into()])
                .collect(),
        ),
        Aggregated::ByStock(s) if which == AggregateArg::Vwap => (
            vec![
                "session",
                "stock_locate",
                "stock",
                "priced_shares",
                "notional",
                "vwap",
            ],
            s.iter()
                .filter(|t| t.priced_volume > 0)
                .map(|t| {
                    let mut r = stock_key(t);
                    r.extend([
                        t.priced_volume.into(),
                        t.notional.into(),
                        t.vwap().map_or(serde_json::Value::Null, |v| {
                            serde_json::Value::String(format!("{v:.4}"))
                        }),
                    ]);
                    r
                })
                .collect(),
        ),
        Aggregated::ByStock(s) => (
            vec!["session", "stock_locate", "stock", "trades", "volume"],
            s.iter()
                .map(|t| {
                    let mut r = stock_key(t);
                    r.extend([t.trades.into(), t.volume.into()]);
                    r
                })
                .collect(),
        ),
    };
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match format {
        Format::Jsonl => {
            // Keys in column order (a JSON map would sort them).
            for r in &rows {
                let fields: Vec<String> = header
                    .iter()
                    .zip(r)
                    .map(|(h, v)| format!("{}:{v}", serde_json::Value::from(*h)))
                    .collect();
                writeln!(out, "{{{}}}", fields.join(","))?;
            }
        }
        Format::Csv => {
            writeln!(out, "{}", header.join(","))?;
            for r in &rows {
                let cells: Vec<String> = r.iter().map(|v| csv_cell(&cell(v))).collect();
                writeln!(out, "{}", cells.join(","))?;
            }
        }
        Format::Table => {
            let cells: Vec<Vec<String>> =
                rows.iter().map(|r| r.iter().map(cell).collect()).collect();
            let widths: Vec<usize> = (0..header.len())
                .map(|i| {
                    cells
                        .iter()
                        .map(|r| r[i].len())
                        .chain([header[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |r: &[String]| -> String {
                let padded: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:>w$}"))
                    .collect();
                padded.join(" ")
            };
            let head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
            writeln!(out, "{}", line(&head))?;
            for r in &cells {
                writeln!(out, "{}", line(r))?;
            }
        }
    }
    Ok(())
}

fn stock_key(t: &StockTotals) -> Vec<serde_json::Value> {
    vec![
        text(&t.session).into(),
        t.stock_locate.into(),
        text(&t.stock).into(),
    ]
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

/// The csv and table columns: name, and width in the table (negative:
/// left-aligned text).
const COLUMNS: [(&str, i8); 12] = [
    ("session", -10),
    ("seq", 12),
    ("received_ns", 19),
    ("type", -4),
    ("stock_locate", 12),
    ("timestamp", 16),
    ("stock", -8),
    ("order_reference", 20),
    ("side", -4),
    ("shares", 10),
    ("price", 10),
    ("match_number", 20),
];

fn cells(r: &MessageRow) -> [String; 12] {
    [
        text(&r.session),
        r.seq.to_string(),
        r.journaled_ns.to_string(),
        text(&r.r#type),
        r.stock_locate.to_string(),
        r.timestamp.to_string(),
        text(&r.stock),
        r.order_reference.to_string(),
        text(&r.side),
        r.shares.to_string(),
        r.price.to_string(),
        r.match_number.to_string(),
    ]
}

/// One csv line (values with a comma or quote quoted) or table line.
fn write_cells(
    out: &mut Vec<u8>,
    cells: &[impl AsRef<str>; 12],
    format: Format,
) -> std::io::Result<()> {
    for (i, (cell, (_, width))) in cells.iter().zip(COLUMNS).enumerate() {
        let cell = cell.as_ref();
        if i > 0 {
            out.push(if format == Format::Csv { b',' } else { b' ' });
        }
        let w = usize::from(width.unsigned_abs());
        match format {
            Format::Csv | Format::Jsonl => out.extend_from_slice(csv_cell(cell).as_bytes()),
            Format::Table if width < 0 => write!(out, "{cell:<w$}")?,
            Format::Table => write!(out, "{cell:>w$}")?,
        }
    }
    out.push(b'\n');
    Ok(())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ranges_json(ranges: &[Range]) -> serde_json::Value {
    ranges
        .iter()
        .map(|r| {
            serde_json::json!({
                "session": text(&r.session), "from": r.from, "to": r.to,
                "messages": r.to - r.from + 1,
            })
        })
        .collect()
}

/// Prints `v` as one JSON object on stdout.
fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_ranges(what: &str, ranges: &[Range]) {
    for r in ranges {
        println!(
            "  {what}: session {:?} seq {}..={} ({} messages)",
            text(&r.session),
            r.from,
            r.to,
            r.to - r.from + 1
        );
    }
}

fn gaps(args: &SourceArgs) -> anyhow::Result<ExitCode> {
    let rows = match &args.journal {
        Some(dir) => read_journal(dir)?.gaps,
        None => {
            let store = args
                .server
                .store()?
                .context("give --clickhouse URL or --journal DIR")?;
            block_on(query::store_gaps(&store))??
        }
    };
    if args.json {
        let gaps: Vec<serde_json::Value> = rows
            .iter()
            .map(|g| {
                serde_json::json!({
                    "session": text(&g.session), "from": g.from_seq,
                    "to": g.end_seq.saturating_sub(1),
                    "messages": g.end_seq.saturating_sub(g.from_seq),
                })
            })
            .collect();
        print_json(&serde_json::json!({"ranges": rows.len(), "gaps": gaps}))?;
        return Ok(ExitCode::SUCCESS);
    }
    for g in &rows {
        println!(
            "session {:?} seq {}..={} ({} messages) not audited",
            text(&g.session),
            g.from_seq,
            g.end_seq.saturating_sub(1),
            g.end_seq.saturating_sub(g.from_seq)
        );
    }
    println!("ticklane audit gaps: {} ranges", rows.len());
    Ok(ExitCode::SUCCESS)
}

fn stats(args: &SourceArgs) -> anyhow::Result<ExitCode> {
    let mut sessions: BTreeMap<Vec<u8>, (u64, u64, u64)> = BTreeMap::new();
    messages(args, &Query::messages(), |m| {
        let (s, q) = (&m.session, m.seq);
        let e = sessions.entry(s.clone()).or_insert((q, q, 0));
        e.0 = e.0.min(q);
        e.1 = e.1.max(q);
        e.2 += 1;
        Ok(())
    })?;
    let total: u64 = sessions.values().map(|v| v.2).sum();
    let mut v = serde_json::json!({
        "messages": total,
        "sessions": sessions.iter().map(|(s, (first, last, n))| serde_json::json!({
            "session": text(s), "messages": n, "first_seq": first, "last_seq": last,
        })).collect::<Vec<_>>(),
    });
    match &args.journal {
        Some(dir) => {
            let view = read_journal(dir)?;
            v["duplicates"] = view.duplicates.into();
            v["gap_ranges"] = view.gaps.len().into();
            v["journal"] = serde_json::json!({
                "segments": journal::segments(dir)?.len(),
                "bytes": journal::disk_bytes(dir)?,
                "unacknowledged": unacknowledged(dir)?,
                "acknowledged_up_to_segment": AckState::load(dir)?.acked.segment,
            });
        }
        None => {
            let store = args.server.store()?.context("give --clickhouse URL")?;
            let (dups, gaps) = block_on(async {
                Ok::<_, ticklane_audit::store::StoreError>((
                    query::store_duplicates(&store).await?,
                    query::store_gaps(&store).await?.len(),
                ))
            })??;
            v["duplicates"] = dups.into();
            v["gap_ranges"] = gaps.into();
        }
    }
    if args.json {
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("messages: {total}");
    for (s, (first, last, n)) in &sessions {
        println!(
            "  session {:?}: {n} messages, seq {first}..={last}",
            text(s)
        );
    }
    let j = &v["journal"];
    if args.journal.is_some() {
        println!("duplicates journaled: {}", v["duplicates"]);
        println!("gap ranges: {}", v["gap_ranges"]);
        println!(
            "journal: {} segments, {} bytes on disk; {} messages not acknowledged by a store (acknowledged up to segment {})",
            j["segments"], j["bytes"], j["unacknowledged"], j["acknowledged_up_to_segment"]
        );
    } else {
        println!("duplicate rows (hidden by FINAL): {}", v["duplicates"]);
        println!("gap ranges: {}", v["gap_ranges"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// Collects a capture's messages by (session, seq).
struct Expected {
    messages: BTreeMap<(Vec<u8>, u64), Vec<u8>>,
    repeated: u64,
    problems: u64,
}

impl FeedSink for Expected {
    fn message(&mut self, session: &Session, seq: u64, message: MessageRef<'_>) {
        let key = (session.trimmed().to_vec(), seq);
        if self
            .messages
            .insert(key, message.as_bytes().to_vec())
            .is_some()
        {
            self.repeated += 1;
        }
    }

    fn packet(&mut self, _packet: &Packet<&[u8]>) {}

    fn problem(&mut self, _at: Location, _problem: Problem) {
        self.problems += 1;
    }
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut expected = Expected {
        messages: BTreeMap::new(),
        repeated: 0,
        problems: 0,
    };
    let mut decoder = FeedDecoder::new(super::feed_filter(&args.feeds)?);
    ticklane_capture::read(&args.capture, |r| decoder.record(r, &mut expected))?;
    if expected.problems > 0 {
        eprintln!(
            "ticklane audit verify: warning: {} malformed packets or messages in {} were skipped",
            expected.problems,
            args.capture.display()
        );
    }
    let mut actual = Vec::new();
    messages(&args.source, &Query::messages(), |m| {
        actual.push(((m.session.clone(), m.seq), m.raw.clone()));
        Ok(())
    })?;
    let duplicates = match &args.source.journal {
        Some(dir) => read_journal(dir)?.duplicates,
        None => {
            let store = args
                .source
                .server
                .store()?
                .context("give --clickhouse URL")?;
            block_on(query::store_duplicates(&store))??
        }
    };
    let d: Differences = verify::compare(&expected.messages, actual);
    let capture = args.capture.display();
    let ok = d.is_empty() && duplicates == 0;
    if args.source.json {
        print_json(&serde_json::json!({
            "capture": capture.to_string(),
            "ok": ok,
            "expected": expected.messages.len(),
            "matched": d.matched,
            "missing": ranges_json(&d.missing),
            "not_in_capture": ranges_json(&d.extra),
            "different_bytes": ranges_json(&d.differing),
            "stored_more_than_once": duplicates,
            "malformed_in_capture": expected.problems,
        }))?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if ok {
        println!(
            "ticklane audit verify: all {} messages of {capture} are in the audit exactly once, and nothing else is",
            d.matched
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "ticklane audit verify: the audit differs from {capture}: {} of {} messages match",
        d.matched,
        expected.messages.len()
    );
    print_ranges("missing", &d.missing);
    print_ranges("not in the capture", &d.extra);
    print_ranges("different bytes", &d.differing);
    if duplicates > 0 {
        println!("  stored more than once: {duplicates} messages");
    }
    Ok(ExitCode::FAILURE)
}

/// The audit options of `ticklane run`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditRunArgs {
    /// Journal every delivered message in this directory (append-only
    /// segments with a CRC per record), on a thread of its own. With no
    /// --clickhouse, the journal is the audit store (`ticklane audit
    /// query --journal DIR`).
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
    /// Ship the journal to this ClickHouse (http://HOST:PORT), exactly once,
    /// after `ticklane audit init`. Unshipped messages of an earlier run in
    /// the same --audit-dir are shipped first.
    #[command(flatten)]
    server: ServerArgs,
    /// When the journal fsyncs: batch (every batch the writer drains, about
    /// one per millisecond under load), interval:MS, or off.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "interval:100",
        requires = "audit_dir"
    )]
    audit_fsync: journal::FsyncPolicy,
    /// Journal segment size in MiB (segments are deleted once ClickHouse has them).
    #[arg(long, value_name = "MIB", default_value_t = 64, requires = "audit_dir")]
    audit_segment_mib: u64,
    /// At a stop, how long to keep shipping what was journaled (seconds);
    /// what is left is shipped at the next start.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    audit_ship_timeout: f64,
    /// Slots of the audit ring between the poller and the audit writer (a
    /// full ring costs the poller nothing: what it could not take is
    /// journaled as gap ranges with exact bounds).
    #[arg(long, value_name = "SLOTS", default_value_t = BusConfig::default().audit, requires = "audit_dir")]
    audit_ring: usize,
    /// At a stop, what the audit ring missed is asked for again from the
    /// --retrans servers (by exact range, on the audit writer's thread) and
    /// journaled: at most this many messages asked per second.
    #[arg(long, value_name = "MESSAGES", default_value_t = FillConfig::default().rate, requires = "audit_dir", value_parser = clap::value_parser!(u64).range(1..))]
    audit_fill_rate: u64,
    /// How long filling the audit's gaps may take at a stop (seconds); what
    /// is still missing then is journaled as gaps with exact bounds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        requires = "audit_dir"
    )]
    audit_fill_timeout: f64,
}

impl AuditRunArgs {
    /// The bus sizes these options ask for.
    pub(crate) fn bus(&self) -> BusConfig {
        BusConfig {
            audit: self.audit_ring.max(1),
            ..BusConfig::default()
        }
    }
}

/// The audit trail of a live run: the writer thread and, with a server,
/// the shipper thread.
pub(crate) struct LiveAudit {
    usage: ticklane_audit::usage::UsageSource,
    writer: ticklane_audit::writer::AuditWriter,
    shipper: Option<ticklane_audit::shipper::Shipper>,
    recovery: journal::Recovery,
    ship_timeout: std::time::Duration,
    watch: (Arc<AtomicBool>, std::thread::JoinHandle<()>),
}

/// Says on stderr, as it happens, when the journal stops (a full disk) and
/// when ClickHouse starts or stops failing (the journal absorbs outages).
fn watch(
    writer: Arc<ticklane_audit::writer::WriterGauges>,
    shipper: Option<Arc<ticklane_audit::shipper::ShipGauges>>,
    done: Arc<AtomicBool>,
) {
    let (mut alarmed, mut failing) = (false, false);
    loop {
        // Read first: one more look after the stop was asked for.
        let last = done.load(Ordering::Acquire);
        let alarm = writer.alarm.load(Ordering::Acquire);
        if alarm != alarmed {
            alarmed = alarm;
            if alarm {
                eprintln!(
                    "ticklane run: ALARM: the audit journal stopped after {} bytes (disk full or I/O error); what it cannot write is kept as exact gap ranges; free space in --audit-dir (it tries again every second)",
                    writer.bytes.load(Ordering::Relaxed)
                );
            } else {
                eprintln!(
                    "ticklane run: the audit journal writes again; the window it missed is asked for from the re-request servers at the stop"
                );
            }
        }
        let now = shipper
            .as_ref()
            .is_some_and(|g| g.failing.load(Ordering::Relaxed));
        if now != failing {
            failing = now;
            let shipped = shipper
                .as_ref()
                .map_or(0, |g| g.rows.load(Ordering::Relaxed));
            let journaled = writer.journaled.load(Ordering::Relaxed);
            if now {
                eprintln!(
                    "ticklane run: warning: ClickHouse is failing; the journal keeps the audit meanwhile ({} messages not shipped yet)",
                    journaled.saturating_sub(shipped)
                );
            } else {
                eprintln!("ticklane run: ClickHouse answers again; shipping the backlog");
            }
        }
        if last {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

impl LiveAudit {
    /// Starts the audit when --audit-dir was given, taking the audit ring;
    /// what the ring misses is filled from `retrans` at the stop.
    pub(crate) fn start(
        args: &AuditRunArgs,
        subscribers: &mut ticklane_appliance::bus::Subscribers,
        retrans: &[std::net::SocketAddr],
    ) -> anyhow::Result<Option<Self>> {
        let Some(dir) = &args.audit_dir else {
            if args.server.clickhouse.is_some() {
                bail!("--clickhouse needs --audit-dir DIR: the journal is what is shipped");
            }
            return Ok(None);
        };
        if !(args.audit_ship_timeout >= 0.0 && args.audit_ship_timeout.is_finite()) {
            bail!("--audit-ship-timeout must be a number of seconds, 0 or more");
        }
        if !(args.audit_fill_timeout >= 0.0 && args.audit_fill_timeout.is_finite()) {
            bail!("--audit-fill-timeout must be a number of seconds, 0 or more");
        }
        let fill = FillConfig {
            servers: retrans.to_vec(),
            rate: args.audit_fill_rate,
            deadline: std::time::Duration::from_secs_f64(args.audit_fill_timeout),
            ..FillConfig::default()
        };
        let store = args.server.store()?;
        if let Some(store) = &store {
            let ready = block_on(store.schema_ready())?.with_context(|| {
                format!(
                    "cannot use ClickHouse at {}: check that it runs, the URL, the user and password; or run without --clickhouse (the journal keeps the audit)",
                    store.url()
                )
            })?;
            if !ready {
                bail!(
                    "ClickHouse at {} has no audit tables: run `ticklane audit init --clickhouse {}` first",
                    store.url(),
                    store.url()
                );
            }
        }
        let (journal, recovery) = journal::Journal::open(
            dir,
            journal::JournalConfig {
                segment_bytes: args.audit_segment_mib.max(1) << 20,
                fsync: args.audit_fsync,
            },
        )?;
        if recovery.torn_segments > 0 {
            eprintln!(
                "ticklane run: warning: the audit journal's last segment ended inside a record (a crash?): {} bytes cut at segment {} byte {}",
                recovery.bytes_dropped,
                recovery.first_at.map_or(0, |p| p.segment),
                recovery.first_at.map_or(0, |p| p.offset)
            );
        }
        let committed = journal.committed();
        let backlog = match store {
            Some(_) => unacknowledged(dir)?,
            None => 0,
        };
        let shipper = match store {
            Some(store) => Some(ticklane_audit::shipper::Shipper::spawn(
                dir,
                store,
                ticklane_audit::shipper::ShipConfig::default(),
                Some(committed),
            )?),
            None => None,
        };
        let writer = ticklane_audit::writer::AuditWriter::spawn(
            ticklane_audit::writer::take_audit(subscribers),
            journal,
            fill,
        )
        .context("starting the audit writer thread")?;
        let done = Arc::new(AtomicBool::new(false));
        let (w, sg, d) = (
            writer.gauges(),
            shipper.as_ref().map(|s| s.gauges()),
            done.clone(),
        );
        let watcher = std::thread::Builder::new()
            .name("audit-watch".into())
            .spawn(move || watch(w, sg, d))
            .context("starting the audit watch thread")?;
        let usage = ticklane_audit::usage::UsageSource::new(
            dir,
            writer.gauges(),
            shipper.as_ref().map(|s| (s.gauges(), backlog)),
        );
        Ok(Some(Self {
            usage,
            writer,
            shipper,
            recovery,
            ship_timeout: std::time::Duration::from_secs_f64(args.audit_ship_timeout),
            watch: (done, watcher),
        }))
    }

    /// The audit's gauges (journal disk usage, backlog, shipped position,
    /// alarm) for the control plane, sampled at each read.
    pub(crate) fn counter_source(&self) -> ticklane_control::appliance::CounterSource {
        let usage = self.usage.clone();
        Box::new(move || {
            usage.sample().map_or_else(
                |_| Vec::new(),
                |u| {
                    u.gauges()
                        .into_iter()
                        .map(|(name, help, v)| {
                            ticklane_control::counters::Counter::of(name, help, v)
                        })
                        .collect()
                },
            )
        })
    }

    /// Journals what is left in the ring and the ring's misses, ships for at
    /// most the timeout, and reports (as the summary's `audit.trail`).
    pub(crate) fn finish(
        self,
        missed: &ticklane_appliance::delivery::RangeLog,
    ) -> serde_json::Value {
        let w = self.writer.finish(missed.kept());
        if w.fill.filled > 0 || !w.fill.unfilled.is_empty() {
            eprintln!(
                "ticklane run: audit: {} of the {} messages the audit ring missed were filled from the re-request servers ({} requests); {} ranges left as gaps{}",
                w.fill.filled,
                missed.messages(),
                w.fill.requests,
                w.fill.unfilled.len(),
                w.fill
                    .not_asked
                    .as_ref()
                    .map(|why| format!(" ({why})"))
                    .unwrap_or_default()
            );
        }
        if missed.is_cut() {
            eprintln!(
                "ticklane run: warning: the audit ring missed {} messages in {} ranges; only the first {} ranges are kept with exact bounds (the summary's audit.missed has the totals)",
                missed.messages(),
                missed.ranges(),
                missed.kept().len()
            );
        }
        if let Some(e) = &w.error {
            eprintln!("ticklane run: ALARM: the audit journal stopped: {e}");
        }
        let gaps: Vec<serde_json::Value> = w
            .gaps
            .iter()
            .map(|g| {
                serde_json::json!({"session": text(g.session.trimmed()), "from": g.from, "to": g.end - 1})
            })
            .collect();
        let mut v = serde_json::json!({
            "journaled": w.journaled,
            "journal_bytes": w.bytes,
            "gaps": gaps,
            "gaps_cut": missed.is_cut(),
            "filled": {
                "messages": w.fill.filled,
                "requests": w.fill.requests,
                "requested_messages": w.fill.requested,
                "refused_messages": w.fill.refused,
                "not_asked": w.fill.not_asked,
            },
            "gaps_journaled": w.gaps_journaled,
            "journal_error": w.error.as_ref().map(ToString::to_string),
            "journal_resumed_after": w.recovered.as_ref().map(ToString::to_string),
            "repaired_at_open": {"torn_segments": self.recovery.torn_segments, "bytes_dropped": self.recovery.bytes_dropped},
        });
        if let Some(s) = self.shipper {
            let r = s.finish(self.ship_timeout);
            v["shipped"] = serde_json::json!({
                "rows": r.rows,
                "batches": r.batches,
                "failed_attempts": r.failures,
                "found_landed_after_failure": r.found_landed,
                "left_for_next_start": r.left_messages,
                "last_error": r.last_error,
                "fatal": r.fatal.as_ref().map(ToString::to_string),
            });
            eprintln!(
                "ticklane run: audit: {} messages journaled, {} shipped to ClickHouse in {} batches ({} failed attempts); {} left for the next start{}",
                w.journaled,
                r.rows,
                r.batches,
                r.failures,
                r.left_messages,
                r.last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            );
        } else {
            eprintln!(
                "ticklane run: audit: {} messages journaled ({} bytes); {} gap ranges",
                w.journaled,
                w.bytes,
                w.gaps.len()
            );
        }
        match self.usage.sample() {
            Ok(u) => {
                v["usage"] = serde_json::json!({
                    "journal_disk_bytes": u.disk_bytes,
                    "alarm": u.alarm,
                    "unjournaled_messages": u.unjournaled,
                    "unshipped_bytes": u.unshipped_bytes,
                    "unshipped_messages": u.unshipped_messages,
                    "shipped_position": u.shipped.map(|p| serde_json::json!({"segment": p.segment, "offset": p.offset})),
                });
            }
            Err(e) => eprintln!("ticklane run: warning: cannot measure the audit journal: {e}"),
        }
        // Watched until here: the outage may end while the stop ships.
        self.watch.0.store(true, Ordering::Release);
        let _ = self.watch.1.join();
        v
    }
}

/// What a run found in its journal at start (see [`restore`]).
pub(crate) struct Restoration {
    restored: ticklane_audit::restore::Restored,
    elapsed: std::time::Duration,
}

impl Restoration {
    /// Where the session the journal ended on resumes.
    pub(crate) fn resume(&self) -> Option<(Session, u64)> {
        self.restored.resume()
    }

    /// The summary's `audit.restored`.
    pub(crate) fn json(&self) -> serde_json::Value {
        let r = &self.restored;
        serde_json::json!({
            "messages": r.messages,
            "duplicates_skipped": r.duplicates,
            "seconds": self.elapsed.as_secs_f64(),
            "resume": r.resume().map(|(s, next)| serde_json::json!({"session": text(s.trimmed()), "next_seq": next})),
            "torn_segments_skipped": r.recovery.torn_segments,
        })
    }
}

/// Before a run on a journal that already holds messages (--audit-dir of
/// an earlier run): the books and VWAP rebuilt from them
/// ([`ticklane_audit::restore::rebuild`]), and where the session resumes.
pub(crate) fn restore(
    args: &AuditRunArgs,
    books: ticklane_appliance::book::Books,
    vwap: ticklane_appliance::analytics::vwap::Vwap,
) -> anyhow::Result<(
    ticklane_appliance::book::Books,
    ticklane_appliance::analytics::vwap::Vwap,
    Option<Restoration>,
)> {
    let Some(dir) = &args.audit_dir else {
        return Ok((books, vwap, None));
    };
    let started = std::time::Instant::now();
    let (books, vwap, restored) =
        ticklane_audit::restore::rebuild(dir, books, vwap).with_context(|| {
            format!(
                "rebuilding the books from the audit journal in {}",
                dir.display()
            )
        })?;
    let elapsed = started.elapsed();
    let r = Restoration { restored, elapsed };
    if let Some((session, next)) = r.resume() {
        eprintln!(
            "ticklane run: restored {} messages from the audit journal in {:.2} s (books rebuilt); session {:?} resumes at seq {next}",
            r.restored.messages,
            elapsed.as_secs_f64(),
            text(session.trimmed())
        );
    }
    Ok((books, vwap, Some(r)))
}

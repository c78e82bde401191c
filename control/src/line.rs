//! The TCP line protocol, for `nc` and scripts: one command per line, one
//! `OK …` or `ERR …` line per command.
//!
//! ```text
//! HELP | STATUS | STATS | FEEDS | BOOK <stock> [depth] | AUTH <token>
//! SUB <group:port[@source]> | UNSUB <group:port>
//! ```
//!
//! Lines are at most [`Limits::max_line`](crate::Limits) bytes; a longer
//! one, a line that is not text, or an unknown command gets an `ERR` and
//! nothing else happens. A connection that sends no whole line for the idle
//! timeout (silent, or trickling bytes), or that does not read its answers,
//! is closed; beyond the maximum of clients, a
//! new one is told so and closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::ControlError;
use crate::appliance::{Appliance, stock_of};
use crate::feeds;
use crate::grpc::feed_list;

/// The commands, as `HELP` lists them.
const HELP: &str = "OK commands: HELP, STATUS, STATS, FEEDS, BOOK <stock> [depth], \
                    AUTH <token>, SUB <group:port[@source]>, UNSUB <group:port>";

/// How the line server limits its clients.
#[derive(Debug, Clone, Copy)]
pub struct LineLimits {
    /// Longest line taken, in bytes.
    pub max_line: usize,
    /// A connection silent this long is closed.
    pub idle: Duration,
    /// An answer the client does not take within this is given up, with it.
    pub write: Duration,
    /// Clients at once.
    pub max_clients: usize,
}

/// Serves the line protocol on `listener` until the runtime stops.
pub async fn serve(
    listener: TcpListener,
    app: Arc<Appliance>,
    token: Option<Arc<str>>,
    limits: LineLimits,
) {
    let clients = Arc::new(Semaphore::new(limits.max_clients));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of descriptors, mostly: wait for some to be closed.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = clients.clone().try_acquire_owned() else {
            let refusal = format!(
                "ERR {} clients are connected (the limit): try again later\n",
                limits.max_clients
            );
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(limits.write, stream.write_all(refusal.as_bytes())).await;
            });
            continue;
        };
        // Answers go out at once, not held back for the client's ACK.
        let _ = stream.set_nodelay(true);
        let (app, token) = (app.clone(), token.clone());
        tokio::spawn(async move {
            let _ = session(stream, &app, token.as_deref(), limits).await;
            drop(permit);
        });
    }
}

/// Why a connection ends.
enum End {
    /// Closed by the client, timed out, or unwritable.
    Gone,
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> Self {
        End::Gone
    }
}

async fn session(
    mut stream: TcpStream,
    app: &Appliance,
    token: Option<&str>,
    limits: LineLimits,
) -> Result<(), End> {
    let mut buf = vec![0u8; limits.max_line + 1];
    let mut len = 0;
    let mut authenticated = false;
    // After an oversized line: its rest, up to the next newline, is skipped.
    let mut skipping = false;
    // Idle means no whole line for this long: a client trickling bytes
    // (slowloris) is closed as one sending nothing.
    let mut deadline = tokio::time::Instant::now() + limits.idle;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(End::Gone),
            Ok(Ok(n)) => n,
            Err(_) => {
                let idle = format!("ERR no command for {:?}: closing\n", limits.idle);
                send(&mut stream, &idle, limits).await?;
                return Err(End::Gone);
            }
        };
        len += n;
        if buf[len - n..len].contains(&b'\n') {
            deadline = tokio::time::Instant::now() + limits.idle;
        }
        // The answers to every whole line read, written at once.
        let mut answers = String::new();
        let mut start = 0;
        while let Some(nl) = buf[start..len].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            if skipping {
                skipping = false;
            } else {
                let line = &buf[start..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                match std::str::from_utf8(line) {
                    Ok(text) => answers += &answer(app, text, token, &mut authenticated).await,
                    Err(_) => answers += "ERR not a text line: HELP lists the commands",
                }
                answers.push('\n');
            }
            start = end + 1;
        }
        buf.copy_within(start..len, 0);
        len -= start;
        if !answers.is_empty() {
            send(&mut stream, &answers, limits).await?;
        }
        if len > limits.max_line {
            if !skipping {
                let long = format!("ERR line longer than {} bytes: ignored\n", limits.max_line);
                send(&mut stream, &long, limits).await?;
            }
            skipping = true;
            len = 0;
        }
    }
}

async fn send(stream: &mut TcpStream, text: &str, limits: LineLimits) -> Result<(), End> {
    match tokio::time::timeout(limits.write, stream.write_all(text.as_bytes())).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(End::Gone),
    }
}

/// The answer to one line.
async fn answer(app: &Appliance, line: &str, token: Option<&str>, authed: &mut bool) -> String {
    let mut words = line.split_ascii_whitespace();
    let Some(command) = words.next() else {
        return "ERR empty line: HELP lists the commands".into();
    };
    let args: Vec<&str> = words.collect();
    let result = match (command.to_ascii_uppercase().as_str(), args.as_slice()) {
        ("HELP", []) => Ok(HELP.to_owned()),
        ("STATUS", []) => Ok(status(app).await),
        ("STATS", []) => Ok(stats(app).await),
        ("FEEDS", []) => Ok(feeds_line(app).await),
        ("BOOK", [stock]) => book(app, stock, None).await,
        ("BOOK", [stock, depth]) => match depth.parse::<usize>() {
            Ok(d) if d > 0 => book(app, stock, Some(d)).await,
            _ => Err(ControlError::InvalidArgument(format!(
                "depth '{depth}' is not a number of levels above 0"
            ))),
        },
        ("AUTH", [given]) => match token {
            None => Err(ControlError::FailedPrecondition(
                "this appliance was started without --token-file: SUB and UNSUB are disabled"
                    .into(),
            )),
            Some(t) if crate::grpc::token_matches(given, t) => {
                *authed = true;
                Ok("OK authenticated".into())
            }
            Some(_) => Err(ControlError::Unauthenticated(
                "wrong token: use the one in the appliance's --token-file".into(),
            )),
        },
        ("SUB" | "UNSUB", [_]) if !*authed => Err(ControlError::Unauthenticated(
            "not authenticated: send AUTH <token> first".into(),
        )),
        ("SUB", [feed]) => sub(app, feed, true).await,
        ("UNSUB", [feed]) => sub(app, feed, false).await,
        ("HELP" | "STATUS" | "STATS" | "FEEDS" | "BOOK" | "AUTH" | "SUB" | "UNSUB", _) => {
            Err(ControlError::InvalidArgument(format!(
                "wrong arguments for {}: HELP shows how to call it",
                command.to_ascii_uppercase()
            )))
        }
        _ => Err(ControlError::InvalidArgument(format!(
            "unknown command '{}': HELP lists the commands",
            command.chars().take(32).collect::<String>()
        ))),
    };
    match result {
        Ok(ok) => ok,
        Err(e) => format!("ERR {}", e.full()),
    }
}

async fn status(app: &Appliance) -> String {
    let snap = app.snapshot();
    let i = &app.info;
    let mut s = format!(
        "OK version={} uptime_s={:.1} interface={} queue={} mode={}",
        i.version,
        snap.uptime_ns as f64 / 1e9,
        i.interface,
        i.queue,
        i.mode
    );
    if !i.xdp_mode.is_empty() {
        s += &format!(" xdp_mode={} bind={}", i.xdp_mode, i.bind);
    }
    let rx = crate::counters::rx_timestamps(&snap);
    if !rx.is_empty() {
        s += &format!(" rx_timestamps={rx}");
    }
    s += if snap.is_stale() {
        " state=stale"
    } else {
        " state=fresh"
    };
    for session in snap.sessions() {
        s += &format!(
            " session={}:next_seq={}:{}",
            crate::counters::session_name(&session.session),
            session.next_seq,
            if session.ended {
                "ended"
            } else if session.stale {
                "stale"
            } else {
                "fresh"
            }
        );
    }
    s
}

async fn stats(app: &Appliance) -> String {
    let (snap, counters) = app.counters().await;
    let mut s = String::from("OK");
    for c in counters {
        s.push(' ');
        s += &c.name;
        for label in [&c.session, &c.feed] {
            if !label.is_empty() {
                s.push('{');
                s += label;
                s.push('}');
            }
        }
        s += &format!("={}", c.value);
    }
    // The histograms as quantiles (bucket upper bounds, in nanoseconds).
    for h in crate::counters::histograms(&snap) {
        for (q, name) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p999")] {
            let ns = h.histogram.quantile(q).unwrap_or(0);
            s += &format!(" {}_{name}_ns={ns}", h.name);
        }
    }
    s
}

async fn feeds_line(app: &Appliance) -> String {
    let (list, _) = feed_list(app).await;
    let mut s = format!("OK {} feeds", list.len());
    for f in list {
        s += &format!(" line{}={}", f.line, f.feed);
        if !f.source.is_empty() {
            s += &format!("@{}", f.source);
        }
        s += &format!(":packets={}", f.packets);
    }
    s
}

async fn book(app: &Appliance, stock: &str, depth: Option<usize>) -> Result<String, ControlError> {
    let snap = app.book(stock_of(stock)?, depth).await?;
    let line = crate::grpc::book_message(&snap).canonical();
    Ok(format!("OK {}", String::from_utf8_lossy(&line).trim_end()))
}

async fn sub(app: &Appliance, feed: &str, subscribe: bool) -> Result<String, ControlError> {
    let f = feeds::parse(feed)?;
    let mut list = app.feeds().await;
    let name = feeds::name(f.group, f.port);
    if subscribe {
        let line = list.subscribe(app.link(), f).await?;
        Ok(format!("OK subscribed {name} line={line}"))
    } else {
        let line = list.unsubscribe(app.link(), f.group, f.port).await?;
        Ok(format!("OK unsubscribed {name} line={line}"))
    }
}

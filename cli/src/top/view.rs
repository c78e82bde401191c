//! Drawing the dashboard (ratatui): a title, the link's state, the feed
//! table, recovery / rings / audit beside the latency histogram, the BBO
//! ladder and the keys. Fits 80×24; more room gives more rows.

use std::time::Instant;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row as TableRow, Table};

use super::model::{self, Counters, Row, Sample, SortBy, count, human, micros, nanos};

/// How the link to the appliance stands.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// Not asked yet.
    Connecting,
    /// Answering.
    Up,
    /// Not answering: why, and when the next try is.
    Unreachable { error: String, retry_at: Instant },
}

/// Everything the screen shows.
#[derive(Debug)]
pub(crate) struct Screen<'a> {
    pub(crate) addr: &'a str,
    pub(crate) interval: f64,
    pub(crate) now: Option<&'a Sample>,
    pub(crate) before: Option<&'a Sample>,
    pub(crate) link: &'a Link,
    pub(crate) paused: bool,
    pub(crate) sort: SortBy,
    pub(crate) filter: &'a str,
    /// The filter being typed, when it is.
    pub(crate) editing: Option<&'a str>,
    /// A note for a while (the appliance restarted).
    pub(crate) note: Option<&'a str>,
}

const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().fg(Color::DarkGray);
const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const GOOD: Style = Style::new().fg(Color::Green);

/// Rows the ladder gets on a terminal of `height` rows.
pub(crate) fn ladder_rows(height: u16) -> usize {
    let (_, _, ladder) = heights(height, 3);
    usize::from(ladder.saturating_sub(2)).max(1)
}

/// Heights of the feed table, the middle panels and the ladder for
/// `feed_rows` rows of feeds, on `height` rows in all.
fn heights(height: u16, feed_rows: usize) -> (u16, u16, u16) {
    let fixed = 3; // title, link, keys
    let room = height.saturating_sub(fixed);
    let middle = (6 + height.saturating_sub(24) / 4).min(12);
    let feeds = u16::try_from(feed_rows + 2)
        .unwrap_or(u16::MAX)
        .clamp(3, (room / 3).max(5));
    let ladder = room.saturating_sub(feeds + middle);
    (feeds, middle, ladder)
}

pub(crate) fn draw(f: &mut Frame<'_>, s: &Screen<'_>) {
    let area = f.area();
    let rows = s
        .now
        .map(|n| model::rows(n, s.before, s.sort))
        .unwrap_or_default();
    let (feeds_h, middle_h, ladder_h) = heights(area.height, rows.len());
    let [title, link, feeds, middle, ladder, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(feeds_h),
        Constraint::Length(middle_h),
        Constraint::Length(ladder_h),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(title_line(s)), title);
    f.render_widget(Paragraph::new(link_line(s)), link);
    draw_feeds(f, feeds, &rows, s.sort);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
    if let Some(now) = s.now {
        draw_health(f, left, now);
        draw_histograms(f, right, now);
    }
    draw_ladder(f, ladder, s);
    f.render_widget(Paragraph::new(keys_line(s)), keys);
}

fn title_line(s: &Screen<'_>) -> Line<'static> {
    let mut spans = vec![Span::styled("ticklane top ", BOLD)];
    if s.paused {
        spans.push(Span::styled("PAUSED", BAD.add_modifier(Modifier::REVERSED)));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::raw(s.addr.to_owned()));
    if let Some(st) = s.now.map(|n| &n.status) {
        let path = if st.xdp_mode.is_empty() {
            st.mode.clone()
        } else {
            format!("{} {}/{}", st.mode, st.xdp_mode, st.bind)
        };
        spans.push(Span::raw(" · "));
        spans.push(if st.stale {
            Span::styled("STALE", BAD)
        } else {
            Span::styled("fresh", GOOD)
        });
        spans.push(Span::raw(format!(
            " · up {} · {path} · {} q{}",
            uptime(st.uptime_ns),
            st.interface,
            st.queue,
        )));
    }
    spans.push(Span::styled(format!(" · every {:.1}s", s.interval), DIM));
    Line::from(spans)
}

fn uptime(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    match secs {
        0..60 => format!("{:.1}s", ns as f64 / 1e9),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
    }
}

fn link_line(s: &Screen<'_>) -> Line<'static> {
    match s.link {
        Link::Connecting => Line::styled(format!("connecting to {} …", s.addr), DIM),
        Link::Unreachable { error, retry_at } => {
            let left = retry_at.saturating_duration_since(Instant::now());
            let what = if s.now.is_some() {
                ", below: last seen"
            } else {
                ""
            };
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            Line::styled(
                format!("unreachable: retrying in {secs}s{what} · {error}"),
                BAD,
            )
        }
        Link::Up => {
            if let Some(note) = s.note {
                return Line::styled(note.to_owned(), BAD);
            }
            let Some(st) = s.now.map(|n| &n.status) else {
                return Line::default();
            };
            let sessions: Vec<String> = st
                .sessions
                .iter()
                .map(|x| format!("{} next {}", x.session, x.next_seq))
                .collect();
            let text = if sessions.is_empty() {
                format!("connected · {} feeds · no session seen yet", st.feeds.len())
            } else {
                format!(
                    "connected · {} feeds · {}",
                    st.feeds.len(),
                    sessions.join(" · ")
                )
            };
            Line::styled(text, GOOD)
        }
    }
}

fn draw_feeds(f: &mut Frame<'_>, area: Rect, rows: &[Row], sort: SortBy) {
    let header = TableRow::new(SortBy::ALL.iter().map(|c| {
        let mark = if *c == sort { "▼" } else { "" };
        format!("{}{mark}", c.title())
    }))
    .style(BOLD);
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), human);
    let body = rows.iter().map(|r| {
        let label = if r.line {
            format!(" {}", r.label)
        } else {
            r.label.clone()
        };
        let won = match (r.won, r.winner) {
            (Some(w), true) => format!("{:.0}% ◀", w * 100.0),
            (Some(w), false) => format!("{:.0}%", w * 100.0),
            (None, _) => String::new(),
        };
        let gaps = if r.line {
            count(r.gaps.0)
        } else {
            format!(
                "{}/{}/{}",
                count(r.gaps.0),
                count(r.gaps.1),
                count(r.gaps.2)
            )
        };
        let state_style = match r.state {
            "STALE" | "DOWN" => BAD,
            _ => Style::new(),
        };
        TableRow::new(vec![
            Span::raw(label),
            Span::raw(opt(r.packets_per_s)),
            Span::raw(if r.line {
                String::new()
            } else {
                opt(r.messages_per_s)
            }),
            Span::raw(won),
            Span::raw(count(r.duplicates)),
            Span::raw(gaps),
            Span::styled(r.state, state_style),
        ])
        .style(if r.line { Style::new() } else { BOLD })
    });
    let table = Table::new(
        body,
        [
            Constraint::Min(20),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(13),
            Constraint::Length(6),
        ],
    )
    .header(header)
    .block(
        Block::new()
            .borders(Borders::TOP)
            .title(" feeds and lines · gaps pending/filled/lost ")
            .border_style(DIM),
    );
    f.render_widget(table, area);
}

fn draw_health(f: &mut Frame<'_>, area: Rect, now: &Sample) {
    let c = Counters::of(&now.stats);
    let get = |n: &str| c.get(n).map_or_else(|| "-".to_owned(), count);
    let mut lines = Vec::new();
    let (mut gaps, mut filled) = (0, 0);
    for s in &now.status.sessions {
        gaps += c.labelled("session_gaps", &s.session, "").unwrap_or(0);
        filled += c
            .labelled("session_gaps_filled", &s.session, "")
            .unwrap_or(0);
    }
    lines.push(Line::from(format!(
        "gaps {} filled {} lost {} msgs",
        count(gaps),
        count(filled),
        get("lost_messages")
    )));
    let recovery = match model::histogram(&now.stats, |n| n == "recovery_us") {
        Some((h, counts)) => match (
            model::quantile(&h.bounds, &counts, 0.5),
            model::quantile(&h.bounds, &counts, 0.99),
        ) {
            (Some(p50), Some(p99)) => format!("recovery p50≤{} p99≤{}", micros(p50), micros(p99)),
            _ => "recovery: no gap recovered yet".to_owned(),
        },
        None => "recovery: not in GetStats".to_owned(),
    };
    lines.push(Line::from(recovery));
    if c.get("xsk_rx_dropped").is_some() {
        lines.push(Line::from(format!(
            "xsk rx_dropped {} rx_ring_full {}",
            get("xsk_rx_dropped"),
            get("xsk_rx_ring_full")
        )));
        lines.push(Line::from(format!(
            "    fill_ring_empty {}",
            get("xsk_rx_fill_ring_empty")
        )));
    } else {
        lines.push(Line::styled("xsk: kernel sockets, no AF_XDP rings", DIM));
    }
    // The audit: journaled, and how far ClickHouse is behind the journal.
    lines.push(match c.get("audit_journaled_messages") {
        None => Line::styled("audit: off (no --audit-dir)", DIM),
        Some(journaled) => {
            let lag = match c.get("audit_unshipped_messages") {
                Some(m) => format!(" · ClickHouse lag {} msgs", count(m)),
                None => " · no ClickHouse".to_owned(),
            };
            let alarm = c.get("audit_journal_alarm").is_some_and(|a| a > 0);
            Line::styled(
                format!(
                    "audit {}{lag}{}",
                    count(journaled),
                    if alarm { " ALARM" } else { "" }
                ),
                if alarm { BAD } else { Style::new() },
            )
        }
    });
    lines.push(Line::from(format!(
        "audit ring missed {} overflow {}",
        get("audit_missed"),
        get("bus_audit_overflow")
    )));
    let block = Block::new()
        .borders(Borders::TOP)
        .title(" recovery · rings · audit ")
        .border_style(DIM);
    f.render_widget(Paragraph::new(lines).block(block), area);
}

/// The wire-to-handler latency histogram when the appliance reports one;
/// else a labelled place for it, and the gap recovery times.
fn draw_histograms(f: &mut Frame<'_>, area: Rect, now: &Sample) {
    let room = usize::from(area.height.saturating_sub(1));
    let latency = now
        .stats
        .histograms
        .iter()
        .find(|h| h.name == "wire_to_handler");
    let (title, lines) = match (latency, model::octaves(&now.stats, "wire_to_handler")) {
        (Some(h), Some(octaves)) => {
            let mut lines = vec![Line::from(if h.count == 0 {
                "no frame timed yet".to_owned()
            } else {
                format!(
                    "p50≤{} p99≤{} p99.9≤{}",
                    nanos(h.p50_ns),
                    nanos(h.p99_ns),
                    nanos(h.p999_ns)
                )
            })];
            let (labels, counts): (Vec<String>, Vec<u64>) = octaves
                .into_iter()
                .map(|(le, n)| (le.map_or_else(|| "more".to_owned(), nanos), n))
                .unzip();
            lines.extend(bars(&labels, &counts, room.saturating_sub(1), area.width));
            let source = if h.source.is_empty() {
                String::new()
            } else {
                format!(" ({})", h.source)
            };
            (format!(" wire→handler latency{source} "), lines)
        }
        _ => {
            let mut lines = vec![Line::styled("wire→handler latency: not in GetStats", DIM)];
            match model::histogram(&now.stats, |n| n == "recovery_us") {
                Some((h, counts)) => {
                    let labels: Vec<String> = h.bounds.iter().map(|b| micros(*b)).collect();
                    lines.extend(bars(&labels, &counts, room.saturating_sub(1), area.width));
                }
                None => lines.push(Line::styled("no histogram in GetStats", DIM)),
            }
            (" recovery time histogram ".to_owned(), lines)
        }
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .title(title)
        .border_style(DIM);
    f.render_widget(Paragraph::new(lines).block(block), area);
}

/// Up to `room` bars, one a bucket (`labels[i]`: its upper bound), the
/// adjacent buckets where most values are.
fn bars(labels: &[String], counts: &[u64], room: usize, width: u16) -> Vec<Line<'static>> {
    let (Some(first), Some(last)) = (
        counts.iter().position(|n| *n > 0),
        counts.iter().rposition(|n| *n > 0),
    ) else {
        return vec![Line::styled("(empty)", DIM)];
    };
    let span = (last - first + 1).min(room.max(1));
    let start = (first..=last + 1 - span)
        .max_by_key(|s| counts[*s..*s + span].iter().sum::<u64>())
        .unwrap_or(first);
    let most = counts[start..start + span]
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let bar_width = usize::from(width.saturating_sub(18)).max(4);
    (start..start + span)
        .map(|i| {
            let n = counts[i];
            let len = (n as f64 / most as f64 * bar_width as f64).ceil() as usize;
            let label = labels.get(i).map_or("", String::as_str);
            Line::from(vec![
                Span::raw(format!("≤{label:>6} ")),
                Span::styled("█".repeat(len.min(bar_width)), GOOD),
                Span::raw(format!(" {}", count(n))),
            ])
        })
        .collect()
}

fn price(p: u32) -> String {
    format!("{:.4}", f64::from(p) / 1e4)
}

fn draw_ladder(f: &mut Frame<'_>, area: Rect, s: &Screen<'_>) {
    // The filter the shown stocks were chosen with (the one just typed
    // applies from the next look).
    let filter = s.now.map_or(s.filter, |n| n.filter.as_str());
    let title = if filter.is_empty() {
        " BBO · busiest stocks ".to_owned()
    } else {
        format!(" BBO · stocks matching {filter} ")
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .title(title)
        .border_style(DIM);
    let Some(now) = s.now else {
        f.render_widget(block, area);
        return;
    };
    if let Some(note) = &now.book_note {
        f.render_widget(
            Paragraph::new(Line::styled(note.clone(), BAD)).block(block),
            area,
        );
        return;
    }
    let widths = [
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(11),
        Constraint::Length(11),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Min(6),
    ];
    let table = match &now.books[..] {
        [] => {
            let text = "no BBO change seen yet (/ and a symbol shows any stock)";
            f.render_widget(Paragraph::new(Line::styled(text, DIM)).block(block), area);
            return;
        }
        // One stock: its ladder, level by level.
        [(b, rate)] => {
            let header = TableRow::new(vec![
                "stock", "bid size", "bid", "ask", "ask size", "orders", "chg/s",
            ])
            .style(BOLD);
            let levels = b.bids.len().max(b.asks.len()).max(1);
            let rows = (0..levels).map(|i| {
                let bid = b.bids.get(i);
                let ask = b.asks.get(i);
                let stock = if i == 0 {
                    format!("{}{}", b.symbol, if b.stale { "!" } else { "" })
                } else {
                    String::new()
                };
                TableRow::new(vec![
                    stock,
                    bid.map(|l| l.shares.to_string()).unwrap_or_default(),
                    bid.map(|l| price(l.price)).unwrap_or_default(),
                    ask.map(|l| price(l.price)).unwrap_or_default(),
                    ask.map(|l| l.shares.to_string()).unwrap_or_default(),
                    format!(
                        "{}/{}",
                        bid.map_or(0, |l| l.orders),
                        ask.map_or(0, |l| l.orders)
                    ),
                    if i == 0 { human(*rate) } else { String::new() },
                ])
            });
            Table::new(rows, widths).header(header)
        }
        many => {
            let header = TableRow::new(vec![
                "stock", "bid size", "bid", "ask", "ask size", "spread", "chg/s",
            ])
            .style(BOLD);
            let rows = many.iter().map(|(b, rate)| {
                let (bid, ask) = (b.bids.first(), b.asks.first());
                let spread = match (bid, ask) {
                    (Some(x), Some(y)) => {
                        format!("{:.4}", (f64::from(y.price) - f64::from(x.price)) / 1e4)
                    }
                    _ => String::new(),
                };
                TableRow::new(vec![
                    format!("{}{}", b.symbol, if b.stale { "!" } else { "" }),
                    bid.map(|l| l.shares.to_string()).unwrap_or_default(),
                    bid.map(|l| price(l.price)).unwrap_or_default(),
                    ask.map(|l| price(l.price)).unwrap_or_default(),
                    ask.map(|l| l.shares.to_string()).unwrap_or_default(),
                    spread,
                    human(*rate),
                ])
            });
            Table::new(rows, widths).header(header)
        }
    };
    f.render_widget(table.block(block), area);
}

fn keys_line(s: &Screen<'_>) -> Line<'static> {
    if let Some(typed) = s.editing {
        return Line::from(vec![
            Span::styled("filter: ", BOLD),
            Span::raw(format!("{typed}_")),
            Span::styled("  Enter apply · Esc cancel · empty: all stocks", DIM),
        ]);
    }
    let key = |k: &'static str, what: String| {
        [
            Span::styled(k, BOLD.fg(Color::Cyan)),
            Span::raw(format!(" {what}  ")),
        ]
    };
    let mut spans = Vec::new();
    spans.extend(key("s", format!("sort:{}", s.sort.title())));
    spans.extend(key(
        "/",
        if s.filter.is_empty() {
            "filter".to_owned()
        } else {
            format!("filter:{}", s.filter)
        },
    ));
    spans.extend(key(
        "p",
        if s.paused { "resume" } else { "pause" }.to_owned(),
    ));
    spans.extend(key("q", "quit".to_owned()));
    Line::from(spans)
}

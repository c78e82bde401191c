//! `ticklane top`: a live terminal dashboard of a running appliance, over
//! its gRPC API.
//!
//! A thread of its own ([`fetch`]) asks the appliance every interval and
//! hands what it saw to the screen loop here, which draws it ([`view`]) and
//! reads the keys. The terminal is put back as it was on every way out: a
//! key, a signal, an error, a panic.

mod fetch;
mod model;
mod view;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};

use fetch::{Report, Target, Wants};
use model::{Sample, SortBy};
use view::{Link, Screen};

/// A live dashboard of a running appliance (ticklane run --grpc ADDR).
///
/// Per session and feed line: packets and messages per second, which line
/// won the A/B arbitration, duplicates, gaps pending/filled/lost; gap
/// recovery times, the AF_XDP ring counters, the audit counters, the
/// latency histogram when the appliance reports one, and the BBO ladder of
/// the stocks that change most. Keys: s sort (cycles the columns), / filter
/// by stock (Enter applies, Esc clears), p pause, q or Ctrl-C quit. An
/// appliance that cannot be reached, or restarts, is shown and reconnected.
#[derive(Debug, clap::Args)]
pub(crate) struct TopArgs {
    /// The appliance's gRPC address (ticklane run --grpc).
    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc: SocketAddr,
    /// The token file the appliance was started with (sent on every call).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Seconds between two looks at the appliance.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = interval)]
    interval: Duration,
}

/// `--interval`: 0.1 s to an hour.
fn interval(s: &str) -> Result<Duration, String> {
    let d = super::args::seconds(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(format!("{s}: give 0.1 to 3600 seconds"));
    }
    Ok(d)
}

pub(crate) fn run(args: &TopArgs) -> anyhow::Result<ExitCode> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "ticklane top draws on a terminal: run it in one (for a script, use `ticklane ctl status` or `ctl stats --json`)"
        );
    }
    if let Some(p) = &args.token_file {
        std::fs::metadata(p).with_context(|| format!("the token file {}", p.display()))?;
    }
    let stop = super::stop_flag()?;
    let (tx, rx) = mpsc::channel();
    let size = terminal::size().context("reading the terminal's size")?;
    let wants = Arc::new(Mutex::new(Wants {
        filter: String::new(),
        ladder: view::ladder_rows(size.1),
    }));
    let target = Target {
        grpc: args.grpc,
        token_file: args.token_file.clone(),
        interval: args.interval,
    };
    let fetcher = fetch::spawn(target, wants.clone(), tx, stop.clone())?;
    let result = {
        let mut term = Terminal::enter()?;
        let mut ui = Ui::new(args, wants);
        ui.run(&mut term.0, &rx, &stop)
    };
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    let _ = fetcher.join();
    result.map(|()| ExitCode::SUCCESS)
}

/// The terminal in raw mode on the alternate screen, put back on drop and
/// (through the panic hook) on a panic.
struct Terminal(ratatui::DefaultTerminal);

impl Terminal {
    fn enter() -> anyhow::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        let backend = ratatui::prelude::CrosstermBackend::new(std::io::stdout());
        // From here on, Drop puts the terminal back whatever fails.
        let mut guard = Self(ratatui::Terminal::new(backend).context("opening the terminal")?);
        terminal::enable_raw_mode().context("putting the terminal in raw mode")?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .context("switching to the alternate screen")?;
        guard.0.clear().context("clearing the screen")?;
        Ok(guard)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back: main screen, cursor shown, cooked mode.
fn restore() {
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
    let _ = terminal::disable_raw_mode();
}

/// Waits up to `timeout` for a key (or a resize); an error once the
/// terminal hung up. (The terminal is asked here before crossterm reads
/// it: crossterm spins on a terminal that hung up, reading end-of-file.)
fn input_ready(timeout: Duration) -> anyhow::Result<bool> {
    wait_for_terminal(Duration::ZERO)?;
    if event::poll(Duration::ZERO).context("reading the terminal")? {
        return Ok(true);
    }
    wait_for_terminal(timeout)?;
    event::poll(Duration::ZERO).context("reading the terminal")
}

/// Waits up to `timeout` for input on the terminal; an error if it hung up.
fn wait_for_terminal(timeout: Duration) -> anyhow::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => bail!("waiting for the terminal: {e}"),
    }
    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
    if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
        bail!("the terminal hung up");
    }
    Ok(())
}

/// The screen loop's state.
struct Ui {
    addr: String,
    interval: f64,
    wants: Arc<Mutex<Wants>>,
    now: Option<Sample>,
    before: Option<Sample>,
    link: Link,
    paused: bool,
    sort: SortBy,
    filter: String,
    editing: Option<String>,
    /// A note shown until then.
    note: Option<(String, Instant)>,
}

/// How long a note stays.
const NOTE_FOR: Duration = Duration::from_secs(5);

impl Ui {
    fn new(args: &TopArgs, wants: Arc<Mutex<Wants>>) -> Self {
        Self {
            addr: args.grpc.to_string(),
            interval: args.interval.as_secs_f64(),
            wants,
            now: None,
            before: None,
            link: Link::Connecting,
            paused: false,
            sort: SortBy::Feed,
            filter: String::new(),
            editing: None,
            note: None,
        }
    }

    fn run(
        &mut self,
        term: &mut ratatui::DefaultTerminal,
        rx: &mpsc::Receiver<Report>,
        stop: &std::sync::atomic::AtomicBool,
    ) -> anyhow::Result<()> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            loop {
                match rx.try_recv() {
                    Ok(report) => self.take(report),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => bail!("the fetch thread ended"),
                }
            }
            term.draw(|f| {
                let note = self
                    .note
                    .as_ref()
                    .filter(|(_, until)| Instant::now() < *until)
                    .map(|(n, _)| n.as_str());
                view::draw(
                    f,
                    &Screen {
                        addr: &self.addr,
                        interval: self.interval,
                        now: self.now.as_ref(),
                        before: self.before.as_ref(),
                        link: &self.link,
                        paused: self.paused,
                        sort: self.sort,
                        filter: &self.filter,
                        editing: self.editing.as_deref(),
                        note,
                    },
                );
            })
            .context("drawing")?;
            if !input_ready(Duration::from_millis(200))? {
                continue;
            }
            match event::read().context("reading the terminal")? {
                Event::Key(k)
                    if k.kind != KeyEventKind::Release && self.key(k.code, k.modifiers) =>
                {
                    return Ok(());
                }
                Event::Resize(_, h) => self.wants().ladder = view::ladder_rows(h),
                _ => {}
            }
        }
    }

    fn wants(&self) -> std::sync::MutexGuard<'_, Wants> {
        self.wants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a report in (unless paused: the screen stays as it is).
    fn take(&mut self, report: Report) {
        match report {
            Report::Unreachable { error, retry_at } => {
                self.link = Link::Unreachable { error, retry_at };
            }
            Report::Sample(s) => {
                self.link = Link::Up;
                if self.paused {
                    return;
                }
                let restarted = self
                    .now
                    .as_ref()
                    .is_some_and(|n| s.stats.uptime_ns < n.stats.uptime_ns);
                if restarted {
                    self.note = Some((
                        "the appliance restarted (its uptime went back): rates start again".into(),
                        Instant::now() + NOTE_FOR,
                    ));
                    self.before = None;
                    self.now = Some(*s);
                } else {
                    self.before = self.now.replace(*s);
                }
            }
        }
    }

    /// Handles a key; true to quit.
    fn key(&mut self, code: KeyCode, modifiers: KeyModifiers) -> bool {
        if modifiers.contains(KeyModifiers::CONTROL) && code == KeyCode::Char('c') {
            return true;
        }
        if let Some(typed) = &mut self.editing {
            match code {
                KeyCode::Enter => {
                    self.filter = typed.trim().to_owned();
                    self.editing = None;
                    self.wants().filter = self.filter.clone();
                }
                KeyCode::Esc => self.editing = None,
                KeyCode::Backspace => {
                    typed.pop();
                }
                KeyCode::Char(c) if c.is_ascii_graphic() && typed.len() < 8 => {
                    typed.push(c.to_ascii_uppercase());
                }
                _ => {}
            }
            return false;
        }
        match code {
            KeyCode::Char('q') => return true,
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('p') => self.paused = !self.paused,
            KeyCode::Char('/') => self.editing = Some(String::new()),
            KeyCode::Esc => {
                self.filter.clear();
                self.wants().filter.clear();
            }
            _ => {}
        }
        false
    }
}

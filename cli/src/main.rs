//! The `ticklane` command line: argument parsing, the commands, and the
//! formatting of what they report. Everything else is in the libraries.

mod args;
mod audit_cmd;
mod bench_cmd;
mod bench_report;
mod book_cmd;
mod config;
mod control_cmd;
mod ctl_cmd;
mod decode;
mod doctor;
mod gen_cmd;
mod replay_cmd;
mod report;
mod retrans_cmd;
mod run_cmd;
mod top;

use std::net::Ipv4Addr;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// ticklane: a kernel-bypass NASDAQ TotalView-ITCH 5.0 market-data appliance.
///
/// Live: receive feeds through XDP/AF_XDP (run). Captures: generate a
/// synthetic feed (gen), decode to canonical JSON Lines (decode), build the
/// order books (book), replay through the whole pipeline (replay), serve
/// MoldUDP64 re-requests (retrans-server), put frames on a wire (send).
/// Audit: query and verify the audit trail (audit).
/// Operation: ask a running appliance (ctl), watch it live (top).
/// Benchmarks: the suites as a report with plots (bench).
/// Deployment: check this machine and interface (doctor); shell
/// completions (completions) and man pages (man).
#[derive(Debug, Parser)]
#[command(
    name = "ticklane",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Gen(gen_cmd::GenArgs),
    Decode(decode::DecodeArgs),
    Book(book_cmd::BookArgs),
    Replay(replay_cmd::ReplayArgs),
    RetransServer(retrans_cmd::RetransArgs),
    Run(Box<run_cmd::RunArgs>),
    Send(run_cmd::SendArgs),
    Audit(audit_cmd::AuditArgs),
    Doctor(doctor::DoctorArgs),
    /// Print shell completions for ticklane, e.g. `ticklane completions bash
    /// > /etc/bash_completion.d/ticklane`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; `ticklane man | man -l -`), or write one
    /// page per command into DIR (ticklane.1, ticklane-run.1, …).
    Man {
        /// Write every page here instead.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    Ctl(ctl_cmd::CtlArgs),
    Top(top::TopArgs),
    Bench(bench_cmd::BenchArgs),
}

fn main() -> ExitCode {
    let args = match config::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("ticklane: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Gen(args) => gen_cmd::run(&args),
        Command::Decode(args) => decode::run(&args),
        Command::Book(args) => book_cmd::run(&args),
        Command::Replay(args) => replay_cmd::run(&args),
        Command::RetransServer(args) => retrans_cmd::run(&args),
        Command::Run(args) => run_cmd::run(&args),
        Command::Send(args) => run_cmd::send(&args),
        Command::Audit(args) => audit_cmd::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ticklane", &mut script);
            print_bytes(&script)
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Ctl(args) => ctl_cmd::run(&args),
        Command::Top(args) => top::run(&args),
        Command::Bench(args) => bench_cmd::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ticklane: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is no error.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The man pages, from the command-line definition itself.
fn man(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let cli = Cli::command();
    let Some(dir) = dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cli).render(&mut page)?;
        return print_bytes(&page);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut pages = vec![("ticklane".to_owned(), cli.clone())];
    pages.extend(
        cli.get_subcommands()
            .map(|sub| (format!("ticklane-{}", sub.get_name()), sub.clone())),
    );
    for (name, command) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        let command = command
            .display_name(name)
            .version(env!("CARGO_PKG_VERSION"));
        clap_mangen::Man::new(command).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A feed on the command line: `GROUP:PORT`, e.g. `239.1.1.1:26477`, or
/// `GROUP:PORT@SOURCE` for a feed sent from one known address only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupPort {
    pub(crate) group: Ipv4Addr,
    pub(crate) port: u16,
    pub(crate) source: Option<Ipv4Addr>,
}

impl std::str::FromStr for GroupPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (s, source) = match s.split_once('@') {
            Some((gp, src)) => (gp, Some(src)),
            None => (s, None),
        };
        let (g, p) = s.rsplit_once(':').ok_or_else(|| {
            format!("'{s}' is not GROUP:PORT[@SOURCE] (for example 239.1.1.1:26477)")
        })?;
        let group: Ipv4Addr = g
            .parse()
            .map_err(|_| format!("'{g}' is not an IPv4 address"))?;
        if !group.is_multicast() {
            return Err(format!("{group} is not a multicast group (224.0.0.0/4)"));
        }
        let port: u16 = p
            .parse()
            .map_err(|_| format!("'{p}' is not a port number"))?;
        if port == 0 {
            return Err("port 0 is not a feed port".into());
        }
        let source = source
            .map(|src| {
                let a: Ipv4Addr = src
                    .parse()
                    .map_err(|_| format!("source '{src}' is not an IPv4 address"))?;
                if a.is_multicast() || a.is_broadcast() || a.is_unspecified() {
                    return Err(format!("source {a} is not a unicast address"));
                }
                Ok(a)
            })
            .transpose()?;
        Ok(Self {
            group,
            port,
            source,
        })
    }
}

impl GroupPort {
    /// The feed it names.
    pub(crate) fn feed(&self) -> ticklane_capture::feed::Feed {
        ticklane_capture::feed::Feed {
            group: self.group,
            port: self.port,
            source: self.source,
        }
    }
}

/// The feeds of `--feed` options (line = position); a GROUP:PORT given
/// twice is refused (one line each: a second source of the same
/// GROUP:PORT cannot be told apart by the steering, which keys on it).
pub(crate) fn feeds(feeds: &[GroupPort]) -> anyhow::Result<Vec<ticklane_capture::feed::Feed>> {
    for (i, f) in feeds.iter().enumerate() {
        if feeds[..i]
            .iter()
            .any(|e| (e.group, e.port) == (f.group, f.port))
        {
            anyhow::bail!(
                "--feed {}:{} is given twice: each GROUP:PORT is one feed line, with at most one @SOURCE",
                f.group,
                f.port
            );
        }
    }
    Ok(feeds.iter().map(GroupPort::feed).collect())
}

/// The feed filter of `--feed` options (line = position).
pub(crate) fn feed_filter(
    feeds: &[GroupPort],
) -> anyhow::Result<ticklane_capture::feed::FeedFilter> {
    Ok(ticklane_capture::feed::FeedFilter {
        feeds: self::feeds(feeds)?,
    })
}

/// A flag raised by SIGINT, SIGTERM or SIGHUP: the commands that run for a
/// while stop cleanly on it and still report.
pub(crate) fn stop_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use anyhow::Context;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, stop.clone())
            .context("installing the signal handler")?;
    }
    Ok(stop)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub(crate) fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{elapsed_precise}}] [{{wide_bar}}] {{percent}}% ({{per_sec}}, eta {{eta}})"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_port_parsing() {
        let gp: GroupPort = "239.1.2.3:26477".parse().unwrap();
        assert_eq!(
            gp,
            GroupPort {
                group: Ipv4Addr::new(239, 1, 2, 3),
                port: 26477,
                source: None,
            }
        );
        let ssm: GroupPort = "239.1.2.3:26477@198.18.0.1".parse().unwrap();
        assert_eq!(ssm.source, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!((ssm.group, ssm.port), (gp.group, gp.port));
        for (bad, why) in [
            ("239.1.2.3:1@239.1.1.1", "not a unicast"),
            ("239.1.2.3:1@0.0.0.0", "not a unicast"),
            ("239.1.2.3:1@host", "not an IPv4"),
            ("239.1.2.3@198.18.0.1", "GROUP:PORT"),
        ] {
            let e = bad.parse::<GroupPort>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(
            "239.1.2.3"
                .parse::<GroupPort>()
                .unwrap_err()
                .contains("GROUP:PORT")
        );
        assert!(
            "10.0.0.1:1"
                .parse::<GroupPort>()
                .unwrap_err()
                .contains("not a multicast")
        );
        assert!("239.1.1.1:0".parse::<GroupPort>().is_err());
        assert!("239.1.1.1:99999".parse::<GroupPort>().is_err());
    }

    #[test]
    fn a_group_port_twice_is_refused() {
        let f = |s: &str| s.parse::<GroupPort>().unwrap();
        let twice = [f("239.1.1.1:1@198.18.0.1"), f("239.1.1.1:1@198.18.0.2")];
        let e = feeds(&twice).unwrap_err().to_string();
        assert!(e.contains("239.1.1.1:1 is given twice"), "{e}");
        let ab = [f("239.1.1.1:1"), f("239.1.1.2:1@198.18.0.2")];
        assert_eq!(feeds(&ab).unwrap().len(), 2);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

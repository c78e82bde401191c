//! The `ticklane` command line: argument parsing, the commands, and the
//! formatting of what they report. Everything else is in the libraries.

mod args;
mod book_cmd;
mod decode;
mod gen_cmd;
mod replay_cmd;
mod report;
mod retrans_cmd;
mod run_cmd;

use std::net::Ipv4Addr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ticklane: a kernel-bypass NASDAQ TotalView-ITCH 5.0 market-data appliance.
///
/// Live: receive feeds through XDP/AF_XDP (run). Captures: generate a
/// synthetic feed (gen), decode to canonical JSON Lines (decode), build the
/// order books (book), replay through the whole pipeline (replay), serve
/// MoldUDP64 re-requests (retrans-server), put frames on a wire (send).
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
    Run(run_cmd::RunArgs),
    Send(run_cmd::SendArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Gen(args) => gen_cmd::run(&args),
        Command::Decode(args) => decode::run(&args),
        Command::Book(args) => book_cmd::run(&args),
        Command::Replay(args) => replay_cmd::run(&args),
        Command::RetransServer(args) => retrans_cmd::run(&args),
        Command::Run(args) => run_cmd::run(&args),
        Command::Send(args) => run_cmd::send(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ticklane: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A `GROUP:PORT` pair, e.g. `239.1.1.1:26477`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupPort {
    pub(crate) group: Ipv4Addr,
    pub(crate) port: u16,
}

impl std::str::FromStr for GroupPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (g, p) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("'{s}' is not GROUP:PORT (for example 239.1.1.1:26477)"))?;
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
        Ok(Self { group, port })
    }
}

/// The feed filter of `--feed GROUP:PORT` options (line = position).
pub(crate) fn feed_filter(feeds: &[GroupPort]) -> ticklane_capture::feed::FeedFilter {
    ticklane_capture::feed::FeedFilter {
        feeds: feeds.iter().map(|f| (f.group.octets(), f.port)).collect(),
    }
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
                port: 26477
            }
        );
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
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

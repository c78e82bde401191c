//! `ticklane top` in a real terminal: tmux (a private server, 80×24) runs
//! a shell, the shell runs `top` in the appliance's namespace, and the test
//! types keys (send-keys) and reads the screen (capture-pane) while a
//! running `ticklane run --grpc` takes an A/B feed in a namespace lab. Top
//! starts before the appliance (unreachable, then connected), sees the
//! lines' rates, the winner of the arbitration and the books' BBO, filters,
//! pauses, sorts, survives a restart of the appliance, and leaves a clean
//! shell on q and on Ctrl-C. Needs root and tmux (scripts/deps.sh).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ticklane_e2e::{
    Lab, arg, assert_success, netns_available, serial, start_run, stop_run, ticklane, ticklane_bin,
    ticklane_ok,
};

const FEED_A: &str = "239.9.9.1:32001";
const FEED_B: &str = "239.9.9.2:32001";
const GRPC: &str = "127.0.0.1:50161";

/// A tmux server of our own (its socket named for this test), killed on
/// drop with everything it runs.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server with one 80×24 window running a plain shell.
    fn start() -> Self {
        let tmux = Self {
            socket: format!("ticklane-top-{}", std::process::id()),
        };
        let out = tmux
            .command()
            .args(["new-session", "-d", "-s", "top", "-x", "80", "-y", "24"])
            .args([
                "env",
                "PS1=tl$ ",
                "TERM=xterm-256color",
                "bash",
                "--norc",
                "--noprofile",
            ])
            .output()
            .expect("tmux runs (scripts/deps.sh installs it)");
        assert_success(&out);
        tmux
    }

    fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    /// Types `keys` (tmux key names: "Enter", "C-c", or literal text).
    fn keys(&self, keys: &[&str]) {
        assert_success(
            &self
                .command()
                .args(["send-keys", "-t", "top"])
                .args(keys)
                .output()
                .unwrap(),
        );
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        assert_success(
            &self
                .command()
                .args(["send-keys", "-t", "top", "-l", text])
                .output()
                .unwrap(),
        );
    }

    /// What the window shows now.
    fn screen(&self) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A tmux format about the pane, e.g. `#{alternate_on}`.
    fn pane(&self, format: &str) -> String {
        self.pane_of("top", format)
    }

    /// A tmux format about the pane of session `session`.
    fn pane_of(&self, session: &str, format: &str) -> String {
        let out = self
            .command()
            .args(["display-message", "-p", "-t", session, format])
            .output()
            .unwrap();
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until the screen passes `test` and returns it; fails, showing
    /// the last screen, after `secs`.
    fn wait_for(&self, what: &str, secs: u64, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let screen = self.screen();
            if test(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what} within {secs} s; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn resize(&self, width: u16, height: u16) {
        assert_success(
            &self
                .command()
                .args(["resize-window", "-t", "top", "-x", &width.to_string()])
                .args(["-y", &height.to_string()])
                .output()
                .unwrap(),
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// The screen line that starts (after blanks) with `label`.
fn row<'a>(screen: &'a str, label: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.trim_start().starts_with(label))
}

/// The packets per second a feed line's row shows (its second column).
fn line_rate(screen: &str, feed: &str) -> Option<f64> {
    let cell = row(screen, feed)?.split_whitespace().nth(1)?;
    let (num, scale) = match cell.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => match cell.strip_suffix('M') {
            Some(n) => (n, 1e6),
            None => (cell, 1.0),
        },
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// `ticklane top` typed into the shell, in namespace `ns`; the shell then
/// prints its exit code.
fn run_top(tmux: &Tmux, ns: &str) {
    let bin = ticklane_bin().display().to_string();
    tmux.type_text(&format!(
        "ip netns exec {ns} {bin} top --grpc {GRPC} --interval 0.5; echo top-exit=$?"
    ));
    tmux.keys(&["Enter"]);
}

/// Waits for the shell to print top's exit code, then checks the terminal
/// is back to normal: main screen, cursor shown, no dashboard left.
fn assert_clean_exit(tmux: &Tmux) {
    let screen = tmux.wait_for("top's exit", 10, |s| {
        s.lines().any(|l| l.starts_with("top-exit="))
    });
    assert!(screen.lines().any(|l| l == "top-exit=0"), "{screen}");
    assert_eq!(
        tmux.pane("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
    assert_eq!(
        tmux.pane("#{cursor_flag}"),
        "1",
        "the cursor is shown again"
    );
    assert!(
        !screen.contains("feeds and lines") && !screen.contains("BBO"),
        "nothing of the dashboard is left on the shell's screen:\n{screen}"
    );
    // The shell takes input again: a command runs and prints.
    tmux.type_text("echo still-here");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the shell's answer", 5, |s| {
        s.lines().any(|l| l.trim() == "still-here")
    });
    tmux.keys(&["C-l"]);
}

fn send(lab: &Lab, capture: &str) -> std::process::Child {
    lab.ticklane_in(&lab.a)
        .args(["send", capture, "--iface", &lab.va, "--pps", "2500"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn top_shows_a_live_appliance_in_a_terminal_and_survives_its_restart() {
    if !netns_available() {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // One session on two lines (A/B), five messages a packet: about
    // 12,000 packets each, 5 s at 2,500 packets/s.
    let day = |name: &str, group: &str| {
        let out = arg(dir.path(), name);
        ticklane_ok(&[
            "gen",
            "--messages",
            "60000",
            "--stocks",
            "12",
            "--seed",
            "21",
            "--session",
            "TOPDAY",
            "--max-messages",
            "5",
            "--group",
            group,
            "-o",
            &out,
        ]);
        out
    };
    let (a, b) = (day("a.pcap", FEED_A), day("b.pcap", FEED_B));
    let lab = Lab::new("top", 1);
    let tmux = Tmux::start();
    tmux.wait_for("the shell's prompt", 10, |s| s.contains("tl$"));

    // Top before the appliance: unreachable, retrying.
    run_top(&tmux, &lab.b);
    let screen = tmux.wait_for("unreachable", 15, |s| {
        s.contains("unreachable: retrying in") && s.contains("cannot reach")
    });
    assert!(screen.contains("ticklane top 127.0.0.1:50161"), "{screen}");

    // The appliance comes up: top connects by itself.
    let journal = arg(dir.path(), "journal");
    let appliance = [
        "--mode",
        "xdp",
        "--feed",
        FEED_A,
        "--feed",
        FEED_B,
        "--grpc",
        GRPC,
        "--audit-dir",
        &journal,
    ];
    let run = start_run(&lab, &appliance);
    tmux.wait_for("connected", 15, |s| s.contains("connected ·"));

    // The feed: both lines' rows with packets per second, a winner, books.
    let senders = [send(&lab, &a), send(&lab, &b)];
    let live = tmux.wait_for("both lines receiving and a BBO ladder", 20, |s| {
        line_rate(s, FEED_A).is_some_and(|r| r > 0.0)
            && line_rate(s, FEED_B).is_some_and(|r| r > 0.0)
            && s.contains('◀')
            && row(s, "TOPDAY").is_some()
            && s.contains("BBO · busiest stocks")
            && s.lines()
                .skip_while(|l| !l.contains("bid size"))
                .nth(1)
                .is_some_and(|l| l.split_whitespace().count() >= 5)
    });
    eprintln!("top while the feed runs:\n{live}");
    assert_eq!(live.lines().count(), 24, "fits 80×24:\n{live}");
    for part in [
        "recovery",
        "xsk rx_dropped",
        "fill_ring_empty",
        "audit ",
        "wire→handler latency",
        "p99.9≤",
        "q quit",
    ] {
        assert!(live.contains(part), "{part} is on the screen:\n{live}");
    }
    let session = row(&live, "TOPDAY").unwrap();
    assert!(session.contains("fresh"), "{session}");

    // Sort: s moves the mark to the next column.
    assert!(live.contains("feed▼"), "{live}");
    tmux.keys(&["s"]);
    tmux.wait_for("sorted on pkt/s", 5, |s| {
        s.contains("pkt/s▼") && s.contains("sort:pkt/s")
    });

    // Pause: the screen stands still while the feed goes on.
    tmux.keys(&["p"]);
    let paused = tmux.wait_for("PAUSED", 5, |s| s.contains("PAUSED"));
    std::thread::sleep(Duration::from_millis(1500));
    let still = tmux.screen();
    assert_eq!(paused, still, "nothing moves while paused");
    tmux.keys(&["p"]);
    tmux.wait_for("running again", 5, |s| !s.contains("PAUSED") && *s != still);

    for s in senders {
        assert_success(&s.wait_with_output().unwrap());
    }
    std::thread::sleep(Duration::from_millis(1000));

    // Filter: one stock's ladder, its best levels those of `ticklane book`.
    let books = ticklane_ok(&["book", &a]).stdout;
    let both_sides = books
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|b| {
            !b["bids"].as_array().unwrap().is_empty() && !b["asks"].as_array().unwrap().is_empty()
        })
        .expect("a stock with bids and asks");
    let stock = both_sides["stock"].as_str().unwrap().to_owned();
    let level = |side: &str| {
        let l = &both_sides[side][0];
        let price = l[0].as_u64().unwrap() as f64 / 1e4;
        (format!("{price:.4}"), l[1].as_u64().unwrap().to_string())
    };
    let ((bid, bid_size), (ask, ask_size)) = (level("bids"), level("asks"));
    tmux.keys(&["/"]);
    tmux.type_text(&stock.to_lowercase());
    tmux.keys(&["Enter"]);
    let filtered = tmux.wait_for("the filtered stock's ladder", 10, |s| {
        s.contains(&format!("stocks matching {stock}")) && row(s, &stock).is_some()
    });
    // Every message journaled; no ClickHouse to lag behind.
    assert!(
        filtered.contains("audit 60000 · no ClickHouse"),
        "{filtered}"
    );
    eprintln!("top filtered on {stock}:\n{filtered}");
    let best = row(&filtered, &stock).unwrap();
    let cells: Vec<&str> = best.split_whitespace().collect();
    assert_eq!(
        cells[1..5],
        [
            bid_size.as_str(),
            bid.as_str(),
            ask.as_str(),
            ask_size.as_str()
        ],
        "{stock}'s BBO as `ticklane book` has it:\n{filtered}"
    );
    // Only that stock's rows: no other symbol of the day in the ladder.
    let ladder: Vec<&str> = filtered
        .lines()
        .skip_while(|l| !l.contains("bid size"))
        .skip(1)
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .collect();
    assert_eq!(ladder.len(), 1, "one stock:\n{filtered}");
    tmux.keys(&["/"]);
    tmux.type_text("NOSUCH");
    tmux.keys(&["Enter"]);
    tmux.wait_for("an unknown stock said so", 10, |s| {
        s.contains("no stock NOSUCH in the books")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the filter cleared", 10, |s| {
        s.contains("BBO · busiest stocks")
    });

    // A larger terminal: more stocks in the ladder.
    let rows_at = |s: &str| {
        s.lines()
            .skip_while(|l| !l.contains("bid size"))
            .skip(1)
            .filter(|l| !l.trim().is_empty() && !l.contains("quit"))
            .count()
    };
    let small = rows_at(&tmux.screen());
    tmux.resize(120, 40);
    let large = tmux.wait_for("a taller ladder", 10, |s| {
        rows_at(s) > small && s.lines().count() == 40
    });
    assert!(rows_at(&large) >= 12.min(small + 8), "{large}");
    tmux.resize(80, 24);

    // The appliance stops: shown, the last figures kept; it comes back:
    // reconnected, and said to have restarted.
    let (_, _) = stop_run(run);
    tmux.wait_for("unreachable after the stop", 15, |s| {
        s.contains("unreachable:") && s.contains("last seen")
    });
    let again = start_run(&lab, &appliance);
    let back = tmux.wait_for("reconnected", 20, |s| {
        s.contains("connected ·") || s.contains("restarted")
    });
    assert!(!back.contains("unreachable"), "{back}");

    // q: the shell is back, clean.
    tmux.keys(&["q"]);
    assert_clean_exit(&tmux);

    // Ctrl-C too.
    run_top(&tmux, &lab.b);
    tmux.wait_for("connected", 15, |s| s.contains("connected ·"));
    tmux.keys(&["C-c"]);
    assert_clean_exit(&tmux);

    // A terminal that hangs up (its window killed) ends top too.
    let bin = ticklane_bin().display().to_string();
    let ns = lab.b.clone();
    assert_success(
        &tmux
            .command()
            .args(["new-session", "-d", "-s", "hup", "-x", "80", "-y", "24"])
            .args(["ip", "netns", "exec", &ns, &bin, "top", "--grpc", GRPC])
            .output()
            .unwrap(),
    );
    let pid = tmux.pane_of("hup", "#{pane_pid}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_success(
        &tmux
            .command()
            .args(["kill-session", "-t", "hup"])
            .output()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}/exe")).exists() {
        assert!(
            Instant::now() < deadline,
            "top {pid} still runs after its terminal hung up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_run(again);
}

#[test]
fn top_wants_a_terminal() {
    let r = ticklane(&["top", "--grpc", "127.0.0.1:9"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("draws on a terminal"), "{}", r.stderr);
    let r = ticklane(&["top", "--interval", "0.01"]);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("give 0.1 to 3600 seconds"),
        "{}",
        r.stderr
    );
}

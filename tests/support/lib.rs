//! Helpers for the end-to-end tests: the `ticklane` binary (built once by
//! cargo, optimised), the real captures, network-namespace labs, and a way
//! to run the binary and see everything it did.

pub mod clickhouse;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of the `ticklane` binary, built on first use, optimised: the live
/// tests receive at hundreds of thousands of packets per second, which a
/// debug build cannot.
pub fn ticklane_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        escargot::CargoBuild::new()
            .package("ticklane")
            .bin("ticklane")
            .release()
            .run()
            .unwrap_or_else(|e| panic!("building the ticklane binary failed: {e}"))
            .path()
            .to_owned()
    })
}

/// The real NASDAQ/BX captures kept in the repository (copies of the shared
/// reference data; see `tests/data/itch50-captures/SOURCE.md`).
pub fn captures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/itch50-captures");
    assert!(
        dir.is_dir(),
        "{}: the real captures must be in tests/data/itch50-captures",
        dir.display()
    );
    dir
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `ticklane ARGS…` to completion.
pub fn ticklane(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(ticklane_bin())
        .args(args)
        .output()
        .expect("the ticklane binary runs");
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(stderr).expect("stderr is UTF-8"),
    }
}

/// Runs `ticklane ARGS…` and insists that it succeeded.
pub fn ticklane_ok(args: &[&str]) -> Run {
    let run = ticklane(args);
    assert_eq!(
        run.code,
        Some(0),
        "ticklane {args:?} failed:\n{}",
        run.stderr
    );
    run
}

/// `ticklane gen` options that damage the `--damaged` copy of a feed: 3 %
/// of packets dropped, 1 % duplicated, 2 % reordered.
pub const DAMAGE: [&str; 6] = ["--drop", "0.03", "--dup", "0.01", "--reorder", "0.02"];

/// A path inside `dir` as a `&str` argument.
pub fn arg(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("UTF-8 temp path").to_owned()
}

/// True when network-namespace tests can run here (root and iproute2).
/// Where they cannot, this fails loudly, unless TICKLANE_SKIP_NETNS=1 says to
/// skip them knowingly (CI runs them as root).
pub fn netns_available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    if root && has_ip {
        return true;
    }
    if std::env::var("TICKLANE_SKIP_NETNS").as_deref() == Ok("1") {
        eprintln!(
            "\n*** SKIPPED: network-namespace test needs root and iproute2 (TICKLANE_SKIP_NETNS=1) ***\n"
        );
        return false;
    }
    panic!(
        "this test needs root and iproute2 (CI has both); set TICKLANE_SKIP_NETNS=1 to skip it knowingly"
    );
}

/// Runs `ip ARGS…` and insists that it succeeded.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2's ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces `a` (198.18.N.1, interface `va`) and `b`
/// (198.18.N.2, interface `vb`) joined by a veth pair with `queues` queues;
/// everything is removed on drop, also when the test fails.
pub struct Lab {
    /// Sender side namespace.
    pub a: String,
    /// Receiver side namespace.
    pub b: String,
    /// Interface in `a`.
    pub va: String,
    /// Interface in `b`.
    pub vb: String,
    /// Third octet of the lab's 198.18.N.0/24.
    pub net: u8,
}

impl Lab {
    /// Builds the lab; `tag` keeps concurrent tests apart.
    pub fn new(tag: &str, queues: u32) -> Self {
        let id = std::process::id() % 10_000;
        let net = 10 + (tag.bytes().fold(0u32, |a, b| a * 31 + u32::from(b)) % 200) as u8;
        let lab = Self {
            a: format!("tl{tag}{id}a"),
            b: format!("tl{tag}{id}b"),
            va: format!("v{tag}{id}a"),
            vb: format!("v{tag}{id}b"),
            net,
        };
        ip(&["netns", "add", &lab.a]);
        ip(&["netns", "add", &lab.b]);
        let q = queues.to_string();
        ip(&[
            "link",
            "add",
            &lab.va,
            "netns",
            &lab.a,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &lab.vb,
            "netns",
            &lab.b,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ]);
        ip(&[
            "-n",
            &lab.a,
            "addr",
            "add",
            &format!("198.18.{net}.1/24"),
            "dev",
            &lab.va,
        ]);
        ip(&[
            "-n",
            &lab.b,
            "addr",
            "add",
            &format!("198.18.{net}.2/24"),
            "dev",
            &lab.vb,
        ]);
        for (ns, dev) in [(&lab.a, &lab.va), (&lab.b, &lab.vb)] {
            // Native XDP on veth needs the peer's MTU at most 3500.
            ip(&["-n", ns, "link", "set", dev, "mtu", "1500", "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    /// Address of side a or b.
    pub fn addr(&self, side_b: bool) -> String {
        format!("198.18.{}.{}", self.net, if side_b { 2 } else { 1 })
    }

    /// `ticklane` to be run inside namespace `ns`.
    pub fn ticklane_in(&self, ns: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(ticklane_bin());
        c
    }

    /// Runs `f` on a thread that has entered namespace `ns` (sockets it
    /// opens live there).
    pub fn in_netns<T: Send + 'static>(
        &self,
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            use std::os::fd::AsRawFd;
            // SAFETY: `file` is an open namespace descriptor for the whole
            // call; setns only changes this thread's network namespace.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                r,
                0,
                "setns into {path}: {}",
                std::io::Error::last_os_error()
            );
            f()
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A child process killed (and reaped) on drop.
pub struct Killed(pub std::process::Child);

impl Killed {
    /// Stops the process as Ctrl-C would (SIGINT) and waits for it to exit.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.0.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) touches no memory; `pid` is our own child, not yet
        // reaped (we wait below), so it cannot name another process.
        let r = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(r, 0, "SIGINT to {pid}: {}", std::io::Error::last_os_error());
        self.0.wait().expect("waiting for the interrupted process")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ticklane retrans-server FILE --listen ADDR` through `command`
/// (the binary, or `ip netns exec NS` with it) and gives it time to bind.
pub fn start_retrans_server(command: Command, file: &str, listen: &str) -> Killed {
    start_retrans_server_with(command, file, listen, &[], Stdio::null())
}

/// [`start_retrans_server`] with more arguments, its stderr going to `stderr`.
pub fn start_retrans_server_with(
    mut command: Command,
    file: &str,
    listen: &str,
    more: &[&str],
    stderr: Stdio,
) -> Killed {
    let child = command
        .args([
            "retrans-server",
            file,
            "--listen",
            listen,
            "--duration",
            "120",
        ])
        .args(more)
        .stderr(stderr)
        .spawn()
        .expect("the retrans-server starts");
    std::thread::sleep(std::time::Duration::from_millis(500));
    Killed(child)
}

/// Insists that a finished command succeeded, showing its stderr if not.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The live tests measure loss: they run one at a time (per test binary),
/// not competing for the machine's cores with each other; hold this while
/// a lab runs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the lock of the live tests (one lab at a time per test binary).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running `ticklane run`, its stdout and stderr going to files (a pipe
/// that nobody drains while the poller runs must not be what slows it).
pub struct Running {
    /// The process (killed on drop).
    pub child: Killed,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// What it wrote on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
}

/// Starts `ticklane run` in the lab's b side and waits until it is ready.
pub fn start_run(lab: &Lab, args: &[&str]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("run.out"), dir.path().join("run.err"));
    let child = lab
        .ticklane_in(&lab.b)
        .args(["run", "--iface", &lab.vb, "--duration", "60"])
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let running = Running {
        child: Killed(child),
        out,
        err,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&running.err).unwrap_or_default();
        if log.contains("ready on") {
            return running;
        }
        assert!(
            Instant::now() < deadline,
            "ticklane run never became ready:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the run with SIGINT and waits for it; returns its stdout and stderr.
pub fn stop_run(mut run: Running) -> (String, String) {
    // SAFETY: kill(2) on the PID of a child we started and have not reaped.
    unsafe { libc::kill(run.child.0.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while run.child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "ticklane run did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        std::fs::read_to_string(&run.out).unwrap(),
        std::fs::read_to_string(&run.err).unwrap(),
    )
}

/// A capture's frames with their capture times.
pub type Frames = Vec<(u64, Vec<u8>)>;

/// Every frame of the capture at `path`.
pub fn frames_of(path: &str) -> Frames {
    let mut out = Vec::new();
    ticklane_capture::read(Path::new(path), |r| {
        if let ticklane_capture::Record::Frame(f) = r {
            out.push((f.ts_nanos, f.data.to_vec()));
        }
    })
    .unwrap();
    out
}

/// Writes `frames` as a pcap at `path`.
pub fn write_frames(path: &str, frames: &Frames) {
    let mut w =
        ticklane_capture::CaptureWriter::create(Path::new(path), ticklane_capture::Format::Pcap)
            .unwrap();
    for (ts, f) in frames {
        w.write_frame(*ts, f).unwrap();
    }
    w.finish().unwrap();
}

/// Generates a day of `messages` messages over 20 stocks with `seed` into
/// `dir/name.pcap`, its books into `dir/name.book`, with `extra` options
/// (e.g. `--group`); returns both paths.
pub fn gen_day(
    dir: &Path,
    name: &str,
    messages: &str,
    seed: &str,
    extra: &[&str],
) -> (String, String) {
    let (feed, book) = (
        arg(dir, &format!("{name}.pcap")),
        arg(dir, &format!("{name}.book")),
    );
    let mut args = vec![
        "gen",
        "--messages",
        messages,
        "--stocks",
        "20",
        "--seed",
        seed,
        "-o",
        &feed,
        "--expect-book",
        &book,
    ];
    args.extend_from_slice(extra);
    ticklane_ok(&args);
    (feed, book)
}

/// The Python interpreter of the tests' virtualenv (target/ticklane-pyvenv,
/// made on first use) once `import` runs in it: else the packages of
/// tests/python/`requirements` are installed into it first (from PyPI).
pub fn python_with(import: &str, requirements: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = repo.join("target/ticklane-pyvenv");
    let py = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args(["-c", import])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&py) {
        if !py.exists() {
            let made = Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .output();
            assert!(
                made.as_ref().is_ok_and(|o| o.status.success()),
                "python3 -m venv failed (install python3 and python3-venv; scripts/deps.sh does): {made:?}"
            );
        }
        assert_success(
            &Command::new(&py)
                .args(["-m", "pip", "install", "-q", "-r"])
                .arg(repo.join("tests/python").join(requirements))
                .output()
                .expect("pip runs"),
        );
    }
    py
}

/// GET `path` from the HTTP server at `addr` (of this thread's network
/// namespace): (status line, body).
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the HTTP server accepts");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("the request is sent");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("the answer is read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// The sequence numbers of every message `ticklane decode` prints of the
/// capture at `path`.
pub fn decoded_seqs(path: &str) -> std::collections::BTreeSet<u64> {
    ticklane_ok(&["decode", path])
        .stdout
        .lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).expect("every line is JSON");
            m["seq"].as_u64().expect("a seq")
        })
        .collect()
}

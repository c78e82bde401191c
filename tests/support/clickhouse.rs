//! The real ClickHouse server (Debian's `clickhouse-server`, 18.16) as a
//! child process of a test: a generated config on free loopback ports, a
//! temporary data directory, stopped by its PID. Never a mock.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary.
pub const SERVER: &str = "/usr/sbin/clickhouse-server";

/// A running server.
pub struct ClickHouse {
    child: Option<Child>,
    dir: tempfile::TempDir,
    netns: Option<String>,
    /// Its HTTP port on 127.0.0.1 (in `netns` when given).
    pub http_port: u16,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("its address").port()
}

fn config(dir: &Path, http: u16, tcp: u16) -> String {
    let d = dir.display();
    format!(
        "<yandex>\n\
         <logger><level>warning</level><log>{d}/log/server.log</log>\
         <errorlog>{d}/log/error.log</errorlog><console>0</console></logger>\n\
         <listen_host>127.0.0.1</listen_host>\n\
         <http_port>{http}</http_port>\n<tcp_port>{tcp}</tcp_port>\n\
         <path>{d}/data/</path>\n<tmp_path>{d}/tmp/</tmp_path>\n\
         <user_files_path>{d}/user_files/</user_files_path>\n\
         <format_schema_path>{d}/format_schemas/</format_schema_path>\n\
         <users_config>{d}/users.xml</users_config>\n\
         <default_profile>default</default_profile>\n<default_database>default</default_database>\n\
         <mark_cache_size>5368709</mark_cache_size>\n\
         </yandex>\n"
    )
}

const USERS: &str = "<yandex>\n\
  <profiles><default></default></profiles>\n\
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>\
  <profile>default</profile><quota>default</quota></default></users>\n\
  <quotas><default></default></quotas>\n\
</yandex>\n";

impl ClickHouse {
    /// Starts a server in this network namespace.
    pub fn start() -> Self {
        Self::start_in(None)
    }

    /// Starts a server, inside network namespace `netns` when given (its
    /// loopback must be up), and waits until it answers.
    pub fn start_in(netns: Option<&str>) -> Self {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} is missing: apt-get install clickhouse-server clickhouse-client (scripts/deps.sh does)"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        for sub in ["log", "data", "tmp", "user_files", "format_schemas"] {
            std::fs::create_dir_all(dir.path().join(sub))
                .expect("creating the server's directories");
        }
        // In a fresh namespace every port is free; in this one, ask the kernel.
        let (http_port, tcp_port) = if netns.is_some() {
            (18123, 19000)
        } else {
            (free_port(), free_port())
        };
        std::fs::write(
            dir.path().join("config.xml"),
            config(dir.path(), http_port, tcp_port),
        )
        .expect("writing the config");
        std::fs::write(dir.path().join("users.xml"), USERS).expect("writing users.xml");
        let mut server = Self {
            child: None,
            dir,
            netns: netns.map(str::to_owned),
            http_port,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SERVER]);
                c
            }
            None => Command::new(SERVER),
        };
        let child = cmd
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("config.xml").display()
            ))
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clickhouse-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "clickhouse-server did not answer within 20 s; its log:\n{}",
                std::fs::read_to_string(self.dir.path().join("log/error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its URL (reachable from the namespace it runs in).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Its data directory (kept across [`ClickHouse::restart`]).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn pid(&self) -> libc::pid_t {
        let id = self.child.as_ref().expect("the server runs").id();
        libc::pid_t::try_from(id).expect("a pid fits pid_t")
    }

    /// Sends `signal` to the server (SIGSTOP, SIGCONT, …).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.pid();
        // SAFETY: kill(2) touches no memory; `pid` is our own child, not
        // reaped, so it names no other process.
        let r = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            r,
            0,
            "signal {signal} to {pid}: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same data and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs `sql` over HTTP from this process (root namespace only) and
    /// returns the body; panics on an HTTP error.
    pub fn sql(&self, sql: &str) -> String {
        assert!(
            self.netns.is_none(),
            "query a server in a namespace with the CLI there"
        );
        let (status, body) = http(self.http_port, sql).expect("ClickHouse answers");
        assert_eq!(status, 200, "{sql}: {body}");
        body
    }

    fn answers(&self) -> bool {
        match &self.netns {
            None => http(self.http_port, "SELECT 1").is_ok_and(|(s, _)| s == 200),
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns, "clickhouse-client", "--port"])
                .arg(self.tcp_port().to_string())
                .args(["--query", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    fn tcp_port(&self) -> u16 {
        let cfg = std::fs::read_to_string(self.dir.path().join("config.xml")).unwrap_or_default();
        cfg.split("<tcp_port>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(9000)
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
    }
}

/// A POST of `sql` to the HTTP interface: (status, body).
fn http(port: u16, sql: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

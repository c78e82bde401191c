//! `ticklane doctor`: what a deployment on a dedicated NIC queue needs,
//! checked on this machine (probed where it can be: the XDP program is
//! attached and detached, an AF_XDP socket is bound), with the fix for each
//! problem. A blocker makes the exit status 1.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use ticklane_appliance::source::steering::{Steering, SteeringError, XdpModeRequest};
use ticklane_appliance::source::xsk::{BindRequest, XskConfig, XskReceiver};
use ticklane_appliance::sys;

use super::GroupPort;

/// Check this machine for a deployment of `ticklane run`.
///
/// Kernel, BPF and AF_XDP support, privileges, memlock, huge pages, isolated
/// cores, clock source and busy polling; with --iface, the interface: its
/// driver's native XDP and zero-copy support (probed by attaching the
/// program and binding a socket, then undoing both; do not run it on an
/// interface a running appliance uses), queues, the flow-steering rules that
/// send each --feed to --queue, that queue's IRQ affinity, threaded NAPI,
/// MTU. Prints each finding with its fix; exit status 1 when something
/// blocks `ticklane run`, 0 otherwise (warnings included).
#[derive(Debug, clap::Args)]
pub(crate) struct DoctorArgs {
    /// The interface the feeds arrive on.
    #[arg(long)]
    iface: Option<String>,
    /// The receive queue `ticklane run --queue` will use.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// A feed GROUP:PORT[@SOURCE] (repeatable): its flow-steering rule is
    /// looked for.
    #[arg(long = "feed", value_name = "GROUP:PORT")]
    feeds: Vec<GroupPort>,
    /// The core the poller will be pinned to (`run --core`): the queue's IRQ
    /// should be elsewhere.
    #[arg(long)]
    core: Option<usize>,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

/// How a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Blocker,
    /// Does not apply here (e.g. IRQs of a virtual device).
    NotApplicable,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Blocker => "BLOCKER",
            Self::NotApplicable => "n/a",
        }
    }
}

/// One finding.
#[derive(Debug)]
struct Finding {
    check: &'static str,
    status: Status,
    found: String,
    fix: Option<String>,
}

#[derive(Debug, Default)]
struct Report(Vec<Finding>);

impl Report {
    fn add(&mut self, check: &'static str, status: Status, found: impl Into<String>) {
        self.0.push(Finding {
            check,
            status,
            found: found.into(),
            fix: None,
        });
    }

    fn fix(
        &mut self,
        check: &'static str,
        status: Status,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Finding {
            check,
            status,
            found: found.into(),
            fix: Some(fix.into()),
        });
    }

    fn count(&self, status: Status) -> usize {
        self.0.iter().filter(|f| f.status == status).count()
    }
}

/// A sysfs or procfs file's content, trimmed.
fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// UMEM bytes `run` takes with its default rings.
fn umem_bytes() -> u64 {
    let c = XskConfig::DEFAULT;
    u64::from(c.fill_size) * u64::from(c.frame_size)
}

pub(crate) fn run(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut r = Report::default();
    machine(&mut r);
    if let Some(iface) = &args.iface {
        interface(&mut r, iface, args);
    } else {
        r.add(
            "interface",
            Status::NotApplicable,
            "no --iface given: the interface checks were skipped",
        );
    }
    let (blockers, warnings) = (r.count(Status::Blocker), r.count(Status::Warn));
    if args.json {
        let checks: Vec<_> = r
            .0
            .iter()
            .map(|f| json!({"check": f.check, "status": f.status.name(), "found": f.found, "fix": f.fix}))
            .collect();
        println!(
            "{}",
            json!({"checks": checks, "blockers": blockers, "warnings": warnings})
        );
    } else {
        let mut out = String::new();
        for f in &r.0 {
            let _ = writeln!(out, "{:<8} {:<18} {}", f.status.name(), f.check, f.found);
            if let Some(fix) = &f.fix {
                let _ = writeln!(out, "{:<27}fix: {fix}", "");
            }
        }
        let _ = writeln!(
            out,
            "ticklane doctor: {} checks, {blockers} blockers, {warnings} warnings",
            r.0.len()
        );
        print!("{out}");
    }
    Ok(if blockers > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Kernel version as (major, minor).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Capabilities `run` needs: (bit, name).
const CAPABILITIES: [(u32, &str); 4] = [
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (14, "CAP_IPC_LOCK"),
    (39, "CAP_BPF"),
];

/// The checks that do not depend on an interface.
fn machine(r: &mut Report) {
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    match kernel_version(&release) {
        Some(v) if v >= (5, 11) => r.add("kernel", Status::Ok, format!("Linux {release}")),
        Some(v) if v >= (5, 4) => r.fix(
            "kernel",
            Status::Warn,
            format!("Linux {release}: AF_XDP works, preferred busy polling (5.11) does not"),
            "a 5.11 or newer kernel",
        ),
        _ => r.fix(
            "kernel",
            Status::Blocker,
            format!("Linux {release:?}: too old for AF_XDP with need_wakeup (5.4)"),
            "a 5.11 or newer kernel",
        ),
    }
    match sys::af_xdp_available() {
        Ok(()) => r.add("AF_XDP sockets", Status::Ok, "available"),
        Err(e) => r.fix(
            "AF_XDP sockets",
            Status::Blocker,
            format!("socket(AF_XDP) failed: {e}"),
            "a kernel built with CONFIG_XDP_SOCKETS=y (`ticklane run --mode udp` works without)",
        ),
    }
    match Steering::load() {
        Ok(_) => r.add("BPF", Status::Ok, "the XDP program loads"),
        Err(e) => r.fix(
            "BPF",
            Status::Blocker,
            format!("the XDP program does not load: {e}"),
            "run as root or with CAP_BPF and CAP_NET_ADMIN; check kernel.unprivileged_bpf_disabled and lockdown",
        ),
    }
    let effective = read("/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap_or(0))
        })
        .unwrap_or(0);
    let missing: Vec<&str> = CAPABILITIES
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        r.add(
            "capabilities",
            Status::Ok,
            "NET_ADMIN, NET_RAW, IPC_LOCK, BPF",
        );
    } else {
        r.fix(
            "capabilities",
            Status::Blocker,
            format!("missing {}", missing.join(", ")),
            "run as root, or `setcap cap_net_admin,cap_net_raw,cap_ipc_lock,cap_bpf+ep $(which ticklane)`",
        );
    }
    let umem = umem_bytes();
    let ipc_lock = effective & (1 << 14) != 0;
    match sys::memlock_limit() {
        Ok(None) => r.add("memlock limit", Status::Ok, "unlimited"),
        Ok(Some(n)) if n >= umem => r.add("memlock limit", Status::Ok, format!("{n} bytes")),
        Ok(Some(n)) if ipc_lock => r.add(
            "memlock limit",
            Status::Ok,
            format!("{n} bytes, not enforced: CAP_IPC_LOCK lets the UMEM be pinned"),
        ),
        Ok(Some(n)) => r.fix(
            "memlock limit",
            Status::Warn,
            format!("{n} bytes, below the {umem} bytes of UMEM `run` locks by default (newer kernels charge the cgroup instead)"),
            "`ulimit -l unlimited`, or LimitMEMLOCK=infinity in the systemd unit",
        ),
        Err(e) => r.add("memlock limit", Status::Warn, format!("unreadable: {e}")),
    }
    huge_pages(r, umem);
    match read("/sys/devices/system/cpu/isolated").as_deref() {
        Some("") | None => r.fix(
            "isolated cores",
            Status::Warn,
            "none: the poller's core also runs other tasks (scheduling stalls fill the rings)",
            "boot with isolcpus=N nohz_full=N rcu_nocbs=N and `ticklane run --core N`",
        ),
        Some(cpus) => r.add("isolated cores", Status::Ok, cpus.to_owned()),
    }
    match read("/sys/devices/system/clocksource/clocksource0/current_clocksource").as_deref() {
        Some("tsc") => r.add("clock source", Status::Ok, "tsc"),
        Some(other) => r.fix(
            "clock source",
            Status::Warn,
            format!("{other}: reading the time is a slow path"),
            "echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource (if the TSC is stable)",
        ),
        None => r.add("clock source", Status::Warn, "unreadable"),
    }
    let busy = read("/proc/sys/net/core/busy_poll").unwrap_or_default();
    if busy == "0" || busy.is_empty() {
        r.fix(
            "busy polling",
            Status::Warn,
            "net.core.busy_poll is 0",
            "`ticklane run --busy-poll 50` sets it per socket (or sysctl -w net.core.busy_poll=50)",
        );
    } else {
        r.add(
            "busy polling",
            Status::Ok,
            format!("net.core.busy_poll = {busy} µs"),
        );
    }
}

fn huge_pages(r: &mut Report, umem: u64) {
    let meminfo = read("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let free = field("HugePages_Free:") * field("Hugepagesize:") * 1024;
    if free >= umem {
        r.add("huge pages", Status::Ok, format!("{} MiB free", free >> 20));
    } else {
        r.fix(
            "huge pages",
            Status::Warn,
            format!(
                "{} MiB free, below the {} MiB UMEM: it falls back to normal pages (more TLB misses)",
                free >> 20,
                umem >> 20
            ),
            format!(
                "sysctl -w vm.nr_hugepages={} (2 MiB pages), or hugepages= at boot",
                umem.div_ceil(2 << 20)
            ),
        );
    }
}

/// The checks of one interface.
fn interface(r: &mut Report, iface: &str, args: &DoctorArgs) {
    let dir = Path::new("/sys/class/net").join(iface);
    if !dir.exists() {
        r.fix(
            "interface",
            Status::Blocker,
            format!("{iface} does not exist here"),
            "name one that `ip link` lists (in this network namespace)",
        );
        return;
    }
    let state = read(dir.join("operstate")).unwrap_or_default();
    let driver = std::fs::read_link(dir.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let virtual_device = driver.is_none();
    let name = driver.unwrap_or_else(|| "virtual device".into());
    if state == "up" || state == "unknown" {
        r.add("interface", Status::Ok, format!("{iface}: {name}, {state}"));
    } else {
        r.fix(
            "interface",
            Status::Warn,
            format!("{iface}: {name}, {state}"),
            format!("ip link set {iface} up, and check the cable or the peer"),
        );
    }
    probe_native_xdp(r, iface);
    probe_zero_copy(r, iface, args.queue);
    let queues = std::fs::read_dir(dir.join("queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(0);
    let queue = args.queue as usize;
    if queue >= queues.max(1) {
        r.fix(
            "queues",
            Status::Blocker,
            format!("{iface} has {queues} receive queues: there is no queue {queue}"),
            format!("a --queue below {queues}, or more queues: ethtool -L {iface} combined N"),
        );
    } else {
        r.add(
            "queues",
            Status::Ok,
            format!("{queues} receive queues; the appliance takes queue {queue}"),
        );
    }
    flow_steering(r, iface, queues, args);
    irq_affinity(r, iface, virtual_device, args);
    match read(dir.join("threaded")).as_deref() {
        Some("1") => r.add(
            "threaded NAPI",
            Status::Ok,
            "on: the receive softirq runs in a kthread that can be pinned away from the poller",
        ),
        Some(_) => r.fix(
            "threaded NAPI",
            Status::Warn,
            "off: the receive softirq runs on whichever core takes the interrupt",
            format!("echo 1 > /sys/class/net/{iface}/threaded, then pin the napi/{iface}-* threads away from the poller's core"),
        ),
        None => r.add(
            "threaded NAPI",
            Status::NotApplicable,
            "this kernel or driver has no threaded NAPI switch",
        ),
    }
    let mtu: u32 = read(dir.join("mtu"))
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    // A frame must fit a UMEM frame after the headroom XDP keeps.
    let largest = XskConfig::DEFAULT.frame_size - 256 - 14 - 8;
    if mtu <= largest {
        r.add("MTU", Status::Ok, format!("{mtu}"));
    } else {
        r.fix(
            "MTU",
            Status::Warn,
            format!("{mtu}: frames above {largest} bytes do not fit a UMEM frame and are dropped"),
            format!("ip link set {iface} mtu 1500 (a feed needs no more)"),
        );
    }
}

fn probe_native_xdp(r: &mut Report, iface: &str) {
    let attempt = Steering::load().and_then(|mut s| s.attach(iface, XdpModeRequest::Native));
    match attempt {
        // Dropping the steering detaches the program at once.
        Ok(_) => r.add(
            "native XDP",
            Status::Ok,
            "the driver runs the program (probed: attached, then detached)",
        ),
        Err(e @ SteeringError::InterfaceBusy { .. }) => r.fix(
            "native XDP",
            Status::Blocker,
            e.to_string(),
            "stop the appliance or program that holds the interface (`ip link show` names it)",
        ),
        Err(e) => r.fix(
            "native XDP",
            Status::Warn,
            format!("refused ({}): `run` falls back to generic XDP, which copies every frame", chain(&e)),
            "a driver with native XDP (mlx5, ice, i40e, ixgbe, veth, virtio_net with enough queues)",
        ),
    }
}

fn probe_zero_copy(r: &mut Report, iface: &str, queue: u32) {
    let cfg = XskConfig {
        queue,
        rx_size: 64,
        fill_size: 64,
        bind: BindRequest::Zerocopy,
        huge_pages: false,
        ..XskConfig::DEFAULT
    };
    match XskReceiver::open(iface, &cfg) {
        Ok(_) => r.add(
            "zero-copy AF_XDP",
            Status::Ok,
            format!("queue {queue} binds in zero-copy mode (probed)"),
        ),
        Err(e) => r.fix(
            "zero-copy AF_XDP",
            Status::Warn,
            format!("queue {queue} refuses zero-copy ({}): `run` binds in copy mode, one copy per frame", chain(&e)),
            "a driver with AF_XDP zero-copy (mlx5, ice, i40e, ixgbe, igc); veth has none",
        ),
    }
}

fn flow_steering(r: &mut Report, iface: &str, queues: usize, args: &DoctorArgs) {
    if args.feeds.is_empty() {
        r.add(
            "flow steering",
            Status::NotApplicable,
            "no --feed given: no rule to look for",
        );
        return;
    }
    if queues <= 1 {
        r.add(
            "flow steering",
            Status::NotApplicable,
            format!("{iface} has one receive queue: every feed arrives on it"),
        );
        return;
    }
    let listed = std::process::Command::new("ethtool")
        .args(["-n", iface])
        .output();
    let rules = match listed {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            r.fix(
                "flow steering",
                Status::Warn,
                format!(
                    "ethtool -n {iface} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                format!("ethtool -K {iface} ntuple on"),
            );
            return;
        }
        Err(_) => {
            r.fix(
                "flow steering",
                Status::Warn,
                "ethtool is not installed: the rules cannot be read",
                "apt-get install ethtool",
            );
            return;
        }
    };
    for feed in &args.feeds {
        // `ethtool -n` prints one block per rule, "Filter: N" first.
        let steered = rules.split("Filter:").any(|block| {
            block.contains(&format!("Dst IP addr: {} ", feed.group))
                && block.contains(&format!("Dest port: {}", feed.port))
                && block.contains(&format!("Action: Direct to queue {}", args.queue))
        });
        if steered {
            r.add(
                "flow steering",
                Status::Ok,
                format!(
                    "{}:{} is steered to queue {}",
                    feed.group, feed.port, args.queue
                ),
            );
        } else {
            r.fix(
                "flow steering",
                Status::Blocker,
                format!(
                    "no rule sends {}:{} to queue {}: it lands on whichever queue RSS picks",
                    feed.group, feed.port, args.queue
                ),
                format!(
                    "ethtool -N {iface} flow-type udp4 dst-ip {} dst-port {} action {} (see deploy/nic-setup.sh)",
                    feed.group, feed.port, args.queue
                ),
            );
        }
    }
}

fn irq_affinity(r: &mut Report, iface: &str, virtual_device: bool, args: &DoctorArgs) {
    if virtual_device {
        r.add(
            "IRQ affinity",
            Status::NotApplicable,
            format!("{iface} is a virtual device: it has no interrupts of its own"),
        );
        return;
    }
    let interrupts = read("/proc/interrupts").unwrap_or_default();
    let queue = args.queue.to_string();
    // Drivers name queue IRQs "<iface>-TxRx-<q>", "<iface>-<q>", "mlx5_comp<q>@…".
    let irq = interrupts.lines().find_map(|l| {
        let name = l.split_whitespace().last()?;
        let ours =
            name.starts_with(iface) && name.rsplit(['-', '_']).next().is_some_and(|q| q == queue);
        ours.then(|| l.split(':').next().map(str::trim))?
    });
    let Some(irq) = irq else {
        r.add(
            "IRQ affinity",
            Status::Warn,
            format!("no interrupt of {iface} names queue {queue} in /proc/interrupts"),
        );
        return;
    };
    let cpus = read(format!("/proc/irq/{irq}/smp_affinity_list")).unwrap_or_default();
    let on_poller = args.core.is_some_and(|core| cpu_list_contains(&cpus, core));
    if on_poller {
        r.fix(
            "IRQ affinity",
            Status::Warn,
            format!("IRQ {irq} of queue {queue} runs on CPUs {cpus}, the poller's core among them"),
            format!("echo <another core> > /proc/irq/{irq}/smp_affinity_list (and stop irqbalance from moving it)"),
        );
    } else {
        r.add(
            "IRQ affinity",
            Status::Ok,
            format!("IRQ {irq} of queue {queue} on CPUs {cpus}"),
        );
    }
}

/// An error with its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(s, ": {cause}");
        source = cause.source();
    }
    s
}

/// Whether a CPU list such as "0-3,8" names `cpu`.
fn cpu_list_contains(list: &str, cpu: usize) -> bool {
    list.split(',').any(|part| match part.split_once('-') {
        Some((a, b)) => matches!((a.trim().parse::<usize>(), b.trim().parse::<usize>()), (Ok(a), Ok(b)) if (a..=b).contains(&cpu)),
        None => part.trim().parse() == Ok(cpu),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_and_cpu_lists_are_read() {
        assert_eq!(kernel_version("6.1.0-31-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.10.0"), Some((5, 10)));
        assert_eq!(kernel_version("garbage"), None);
        assert!(cpu_list_contains("0-3,8", 2));
        assert!(cpu_list_contains("0-3,8", 8));
        assert!(!cpu_list_contains("0-3,8", 5));
        assert!(!cpu_list_contains("", 0));
    }
}

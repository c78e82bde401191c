//! What `ticklane bench` writes: the machine it ran on, and the suites'
//! figures as Markdown (every figure beside its same-run baseline and the
//! ratio), SVG plots and JSON.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde_json::{Value, json};
use ticklane_benches::suite::{Distribution, Scale, Suite, target_text, unit_suffix};

/// A finished run.
pub(crate) struct Report {
    pub(crate) machine: Value,
    pub(crate) scale: Scale,
    pub(crate) suites: Vec<Suite>,
    /// Suites asked for and not run, and why.
    pub(crate) skipped: Vec<(&'static str, String)>,
}

/// The first line of `path` that starts with `key`, after its colon.
fn field(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once([':', '=']))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

fn first_line(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().next().map(|l| l.trim().to_owned())
}

/// The machine, and how the binary was built.
pub(crate) fn machine() -> Value {
    let logical = std::fs::read_to_string("/proc/cpuinfo")
        .map(|t| t.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let rustc_now = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    json!({
        "hostname": first_line("/proc/sys/kernel/hostname"),
        "cpu_model": field("/proc/cpuinfo", "model name"),
        "cpus_online": logical,
        "cpus_usable": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory": field("/proc/meminfo", "MemTotal"),
        "kernel": first_line("/proc/sys/kernel/osrelease"),
        "os": field("/etc/os-release", "PRETTY_NAME"),
        "load_average_at_start": first_line("/proc/loadavg"),
        "ticklane_version": env!("CARGO_PKG_VERSION"),
        "git_commit": env!("TICKLANE_GIT_COMMIT"),
        "built_with": env!("TICKLANE_RUSTC"),
        "rustc_on_path": rustc_now,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "started_utc": utc_now(),
        // Set when the net suite ran: the interface it measured.
        "interface": Value::Null,
    })
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The file stem of every suite: its name, numbered when it appears
/// more than once (the books suite has a workload each).
fn stems(suites: &[Suite]) -> Vec<String> {
    suites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let same = suites.iter().filter(|o| o.name == s.name).count();
            if same > 1 {
                let n = suites[..=i].iter().filter(|o| o.name == s.name).count();
                format!("{}-{n}", s.name)
            } else {
                s.name.to_owned()
            }
        })
        .collect()
}

fn finite(x: f64) -> Value {
    if x.is_finite() { x.into() } else { Value::Null }
}

impl Report {
    /// report.json.
    pub(crate) fn json(&self) -> Value {
        let stems = stems(&self.suites);
        json!({
            "machine": self.machine,
            "scale": super::bench_cmd::scale_json(self.scale),
            "suites": self.suites.iter().zip(&stems).map(|(s, stem)| json!({
                "suite": s.name,
                "id": stem,
                "title": s.title,
                "timings": s.timings.iter().map(|t| json!({
                    "name": t.name,
                    "seconds": finite(t.seconds),
                    "messages": t.messages,
                    "ns_per_message": finite(t.ns_per_message()),
                    "messages_per_second": finite(t.messages_per_second()),
                    "baseline": t.baseline,
                    "speedup_vs_baseline": s.speedup(t).map(finite),
                })).collect::<Vec<_>>(),
                "checks": s.checks.iter().map(|c| json!({
                    "what": c.what,
                    "value": finite(c.value),
                    "unit": c.unit,
                    "target": c.target.map(|t| target_text(t, c.unit)),
                    "met": c.met(),
                })).collect::<Vec<_>>(),
                "distributions": s.distributions.iter().map(|d| {
                    let mut v = json!({"name": d.name, "unit": d.unit, "samples": d.sorted.len()});
                    for (name, q) in Distribution::SHOWN {
                        v[name] = finite(d.quantile(q));
                    }
                    v
                }).collect::<Vec<_>>(),
                "notes": s.notes,
                "plots": plots_of(s, stem),
            })).collect::<Vec<_>>(),
            "skipped": self.skipped.iter()
                .map(|(name, why)| json!({"suite": name, "why": why}))
                .collect::<Vec<_>>(),
        })
    }

    /// report.md.
    fn markdown(&self) -> String {
        let m = &self.machine;
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        let mut s = String::from("# ticklane bench report\n\n");
        let _ = writeln!(
            s,
            "Run {} on `{}`: {}, {} CPUs online ({} usable), {} memory, Linux {} ({}).\n\
             ticklane {} at commit `{}`, built with {} ({} build). Load average at the start: {}.\n",
            text(&m["started_utc"]),
            text(&m["hostname"]),
            text(&m["cpu_model"]),
            m["cpus_online"],
            m["cpus_usable"],
            text(&m["memory"]),
            text(&m["kernel"]),
            text(&m["os"]),
            text(&m["ticklane_version"]),
            text(&m["git_commit"]),
            text(&m["built_with"]),
            text(&m["profile"]),
            text(&m["load_average_at_start"]),
        );
        s.push_str(
            "Every contender ran in this one run, beside its baseline (interleaved round by \
             round where the suite allows, best round kept); each figure is shown beside the \
             baseline and the ratio (the baseline's time per message over the contender's: \
             above 1 is faster). Absolute figures depend on the machine and its load; the \
             ratios much less.\n",
        );
        let _ = writeln!(
            s,
            "\nScale: {} messages in the main workload, {} rounds.",
            self.scale.messages, self.scale.rounds
        );
        for (suite, stem) in self.suites.iter().zip(stems(&self.suites)) {
            let _ = writeln!(s, "\n## {stem}: {}\n", suite.title);
            s.push_str(
                "| contender | best time (ms) | ns/message | M messages/s | same-run baseline | \
                 baseline ns/message | ratio |\n|---|---:|---:|---:|---|---:|---:|\n",
            );
            for t in &suite.timings {
                let base = t.baseline.as_deref().and_then(|b| suite.timing(b));
                let _ = writeln!(
                    s,
                    "| {} | {:.2} | {:.1} | {:.2} | {} | {} | {} |",
                    t.name,
                    t.seconds * 1e3,
                    t.ns_per_message(),
                    t.messages_per_second() / 1e6,
                    base.map_or("(is a baseline)".into(), |b| b.name.clone()),
                    base.map_or("".into(), |b| format!("{:.1}", b.ns_per_message())),
                    suite
                        .speedup(t)
                        .map_or(String::new(), |x| format!("{x:.2}x")),
                );
            }
            if !suite.checks.is_empty() {
                s.push_str(
                    "\n| derived figure (same run) | value | target | met |\n|---|---:|---|---|\n",
                );
                for c in &suite.checks {
                    let _ = writeln!(
                        s,
                        "| {} | {:.2}{} | {} | {} |",
                        c.what,
                        c.value,
                        unit_suffix(c.unit),
                        c.target.map_or(String::new(), |t| target_text(t, c.unit)),
                        match c.met() {
                            Some(true) => "met",
                            Some(false) => "**NOT met**",
                            None => "",
                        }
                    );
                }
            }
            if !suite.distributions.is_empty() {
                let names: Vec<&str> = Distribution::SHOWN.iter().map(|(n, _)| *n).collect();
                let _ = writeln!(
                    s,
                    "\n| distribution | {} |\n|---|{}",
                    names.join(" | "),
                    "---:|".repeat(names.len())
                );
                for d in &suite.distributions {
                    let cells: Vec<String> = Distribution::SHOWN
                        .iter()
                        .map(|(_, q)| format!("{:.0}", d.quantile(*q)))
                        .collect();
                    let _ = writeln!(s, "| {} ({}) | {} |", d.name, d.unit, cells.join(" | "));
                }
            }
            for n in &suite.notes {
                let _ = writeln!(s, "\n{n}");
            }
            for plot in plots_of(suite, &stem) {
                let _ = writeln!(s, "\n![{plot}]({plot})");
            }
        }
        if !self.skipped.is_empty() {
            s.push_str("\n## Not run\n\n");
            for (name, why) in &self.skipped {
                let _ = writeln!(s, "- **{name}**: {why}");
            }
        }
        s
    }
}

/// The plots of a suite, by file name.
fn plots_of(suite: &Suite, stem: &str) -> Vec<String> {
    let mut plots = vec![format!("{stem}-throughput.svg")];
    if !suite.distributions.is_empty() {
        plots.push(format!("{stem}-latency-cdf.svg"));
    }
    plots
}

/// Writes the report into `dir`; returns how many files.
pub(crate) fn write(report: &Report, dir: &Path) -> anyhow::Result<usize> {
    let put = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    let mut files = 0;
    for (suite, stem) in report.suites.iter().zip(stems(&report.suites)) {
        put(
            &format!("{stem}-throughput.svg"),
            throughput_svg(suite)?.as_bytes(),
        )?;
        files += 1;
        if !suite.distributions.is_empty() {
            put(
                &format!("{stem}-latency-cdf.svg"),
                cdf_svg(&suite.title, &suite.distributions)?.as_bytes(),
            )?;
            files += 1;
        }
    }
    put("report.md", report.markdown().as_bytes())?;
    put(
        "report.json",
        serde_json::to_string_pretty(&report.json())?.as_bytes(),
    )?;
    Ok(files + 2)
}

/// A title short enough for a plot.
fn short(title: &str) -> String {
    let t = title.split(',').next().unwrap_or(title);
    if t.chars().count() > 90 {
        t.chars().take(87).chain("...".chars()).collect()
    } else {
        t.to_owned()
    }
}

/// Bars of M messages/s, one per contender.
fn throughput_svg(suite: &Suite) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let n = suite.timings.len();
        let rates: Vec<f64> = suite
            .timings
            .iter()
            .map(|t| t.messages_per_second() / 1e6)
            .map(|r| if r.is_finite() { r } else { 0.0 })
            .collect();
        let top = rates.iter().copied().fold(0.0, f64::max).max(1e-3) * 1.15;
        let root = SVGBackend::with_string(&mut svg, (960, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(short(&suite.title), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..top)?;
        let names: Vec<String> = suite.timings.iter().map(|t| t.name.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.max(1))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("M messages/s (higher is better)")
            .draw()?;
        chart.draw_series(rates.iter().enumerate().map(|(i, r)| {
            let color = if suite.timings[i].baseline.is_none() {
                RGBColor(150, 150, 150)
            } else {
                RGBColor(31, 119, 180)
            };
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *r),
                ],
                color.filled(),
            );
            bar.set_margin(0, 0, 18, 18);
            bar
        }))?;
        chart.draw_series(rates.iter().enumerate().map(|(i, r)| {
            Text::new(
                format!("{r:.2}"),
                (SegmentValue::CenterOf(i), *r + top * 0.02),
                ("sans-serif", 13),
            )
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// Cumulative distributions, each cut at its p99.9 for legibility.
fn cdf_svg(title: &str, dists: &[Distribution]) -> anyhow::Result<String> {
    const POINTS: usize = 400;
    let mut svg = String::new();
    {
        let right = dists
            .iter()
            .map(|d| d.quantile(0.999))
            .filter(|x| x.is_finite())
            .fold(1.0, f64::max)
            * 1.05;
        let unit = dists.first().map_or("", |d| d.unit);
        let root = SVGBackend::with_string(&mut svg, (960, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} (CDF, up to p99.9)", short(title)),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..right, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc(unit)
            .y_desc("fraction at or below")
            .draw()?;
        for (i, d) in dists.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points = (0..=POINTS).map(|k| {
                let q = k as f64 / POINTS as f64;
                (d.quantile(q).min(right), q)
            });
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(d.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        let now = utc_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }
}

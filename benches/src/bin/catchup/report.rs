//! Results: `RESULT` lines as the anchors print them, `SUMMARY` lines (min / median / max per
//! system, workload and metric) and the final table with pgrepl's ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::system::System;
use crate::workload::Workload;

/// One run's outcome.
#[derive(Debug, Clone)]
pub(crate) struct RunResult {
    pub(crate) system: System,
    pub(crate) workload: Workload,
    pub(crate) rep: usize,
    /// `key=value` pairs in print order.
    pub(crate) fields: Vec<(String, String)>,
}

impl RunResult {
    pub(crate) fn new(system: System, workload: Workload, rep: usize) -> RunResult {
        RunResult {
            system,
            workload,
            rep,
            fields: Vec::new(),
        }
    }

    pub(crate) fn set(&mut self, key: &str, value: impl ToString) {
        self.fields.push((key.to_owned(), value.to_string()));
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// Whether the run finished and its data matched.
    pub(crate) fn ok(&self) -> bool {
        self.get("status").is_none()
            && matches!(self.get("verified").or(self.get("converged")), Some("yes"))
    }

    /// `RESULT system=… workload=… rep=… key=value …`
    pub(crate) fn line(&self) -> String {
        let mut s = format!(
            "RESULT system={} workload={} rep={}",
            self.system.name(),
            self.workload.name(),
            self.rep
        );
        for (k, v) in &self.fields {
            let _ = write!(s, " {k}={v}");
        }
        s
    }
}

/// Reads the `RESULT` lines of results files back (for `--report`).
pub(crate) fn parse_results(text: &str) -> Vec<RunResult> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("RESULT ") else {
            continue;
        };
        let mut fields = Vec::new();
        let mut chars = rest.chars().peekable();
        while chars.peek().is_some() {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                value.push('"');
                chars.next();
                for c in chars.by_ref() {
                    value.push(c);
                    if c == '"' {
                        break;
                    }
                }
                chars.next_if_eq(&' ');
            } else {
                value = chars.by_ref().take_while(|c| *c != ' ').collect();
            }
            fields.push((key.trim().to_owned(), value));
        }
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        let (Some(sys), Some(wl), Some(rep)) = (
            get("system").and_then(System::parse),
            get("workload").and_then(Workload::parse),
            get("rep").and_then(|r| r.parse().ok()),
        ) else {
            continue;
        };
        let mut r = RunResult::new(sys, wl, rep);
        r.fields = fields
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "system" | "workload" | "rep"))
            .collect();
        out.push(r);
    }
    out
}

/// Lines printed to standard output and appended to the results file as they come.
#[derive(Debug)]
pub(crate) struct Out {
    path: PathBuf,
    file: std::fs::File,
}

impl Out {
    pub(crate) fn create(path: &Path) -> Result<Out> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::File::create(path)?;
        Ok(Out {
            path: path.to_owned(),
            file,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn line(&mut self, line: &str) {
        println!("{line}");
        let _ = writeln!(self.file, "{line}");
        let _ = self.file.flush();
    }
}

/// min, median, max (the median of an even count is the mean of the middle two).
fn stats(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((v[0], median, v[n - 1]))
}

/// The metrics summarised, per workload.
const METRICS: [&str; 12] = [
    "seconds",
    "rows_per_s",
    "txns_per_s",
    "first_commit_s",
    "pub_cpu_s",
    "sub_cpu_s",
    "engine_cpu_s",
    "total_cpu_s",
    "tps_a",
    "tps_b",
    "catchup_s",
    "load1",
];

type Key = (Workload, System);

fn group(results: &[RunResult]) -> BTreeMap<Key, Vec<&RunResult>> {
    let mut g: BTreeMap<Key, Vec<&RunResult>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.ok()) {
        g.entry((r.workload, r.system)).or_default().push(r);
    }
    g
}

fn metric(runs: &[&RunResult], m: &str) -> Option<(f64, f64, f64)> {
    stats(runs.iter().filter_map(|r| r.number(m)).collect())
}

/// `SUMMARY system=… workload=… metric=… n=… min=… median=… max=…` over successful runs.
pub(crate) fn summary_lines(results: &[RunResult]) -> Vec<String> {
    let mut out = Vec::new();
    for ((wl, sys), runs) in group(results) {
        for m in METRICS {
            if let Some((lo, med, hi)) = metric(&runs, m) {
                let n = runs.iter().filter(|r| r.number(m).is_some()).count();
                out.push(format!(
                    "SUMMARY system={} workload={} metric={m} n={n} min={} median={} max={}",
                    sys.name(),
                    wl.name(),
                    fmt(lo),
                    fmt(med),
                    fmt(hi)
                ));
            }
        }
    }
    for r in results.iter().filter(|r| !r.ok()) {
        out.push(format!(
            "FAILED system={} workload={} rep={} ({})",
            r.system.name(),
            r.workload.name(),
            r.rep,
            r.get("status")
                .or(r.get("verified"))
                .or(r.get("converged"))
                .unwrap_or("?")
        ));
    }
    out
}

fn fmt(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A rate in thousands: `226.1k`.
fn k(v: f64) -> String {
    format!("{:.1}k", v / 1000.0)
}

/// The final table (Markdown), per workload: each system's medians and ranges, and pgrepl's
/// ratios to native and pglogical.
pub(crate) fn table(results: &[RunResult], header: &str) -> Vec<String> {
    let groups = group(results);
    let mut out = vec![String::new(), header.to_owned()];
    let workloads: Vec<Workload> = {
        let mut w: Vec<Workload> = results.iter().map(|r| r.workload).collect();
        w.sort();
        w.dedup();
        w
    };
    for wl in workloads {
        let systems: Vec<System> = [System::Pgrepl, System::Native, System::Pglogical]
            .into_iter()
            .filter(|s| results.iter().any(|r| r.workload == wl && r.system == *s))
            .collect();
        out.push(String::new());
        if !wl.is_bidir() {
            let (rate, unit) = match wl {
                Workload::Bulk => ("rows_per_s", "rows/s"),
                _ => ("txns_per_s", "txns/s"),
            };
            out.push(format!(
                "### {} — catch-up throughput ({unit}; medians, [min – max])",
                wl.name()
            ));
            out.push(String::new());
            out.push(format!(
                    "| system | ok/runs | {unit} | seconds | first commit s | node1 CPU s | node2 CPU s | pgrepl process CPU s | all CPU s / wall s |"
                ));
            out.push("|---|---|---|---|---|---|---|---|---|".into());
            for sys in &systems {
                let total = results
                    .iter()
                    .filter(|r| r.workload == wl && r.system == *sys)
                    .count();
                let runs = groups.get(&(wl, *sys)).cloned().unwrap_or_default();
                let cell = |m: &str, f: &dyn Fn(f64) -> String| {
                    metric(&runs, m).map_or_else(
                        || "–".to_owned(),
                        |(lo, med, hi)| format!("**{}** [{} – {}]", f(med), f(lo), f(hi)),
                    )
                };
                let plain = |m: &str| {
                    metric(&runs, m).map_or_else(|| "–".to_owned(), |(_, med, _)| fmt(med))
                };
                let util = stats(
                    runs.iter()
                        .filter_map(|r| Some(r.number("total_cpu_s")? / r.number("seconds")?))
                        .collect(),
                )
                .map_or_else(|| "–".to_owned(), |(_, m, _)| format!("{m:.2}"));
                out.push(format!(
                    "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} |",
                    sys.name(),
                    runs.len(),
                    total,
                    cell(rate, &k),
                    cell("seconds", &|v| format!("{v:.2}")),
                    plain("first_commit_s"),
                    plain("pub_cpu_s"),
                    plain("sub_cpu_s"),
                    if *sys == System::Pgrepl {
                        plain("engine_cpu_s")
                    } else {
                        "(in node2)".into()
                    },
                    util
                ));
            }
            let med = |sys: System| metric(groups.get(&(wl, sys))?, rate).map(|(_, m, _)| m);
            let mut ratios = Vec::new();
            if let Some(p) = med(System::Pgrepl) {
                for other in [System::Native, System::Pglogical] {
                    if let Some(o) = med(other) {
                        ratios.push(format!("pgrepl/{} = **{:.2}**", other.name(), p / o));
                    }
                }
            }
            for sys in &systems {
                let timeouts: Vec<&RunResult> = results
                    .iter()
                    .filter(|r| {
                        r.workload == wl && r.system == *sys && r.get("status") == Some("timeout")
                    })
                    .collect();
                if timeouts.is_empty() {
                    continue;
                }
                let applied: Vec<String> = timeouts
                    .iter()
                    .map(|r| {
                        let t = r.number("timeout_s").unwrap_or(0.0);
                        match r.number("pgrepl12_applied_txns") {
                            Some(n) if t > 0.0 => {
                                format!("{n:.0} txns applied (≈ {:.1} txns/s)", n / t)
                            }
                            _ => "?".into(),
                        }
                    })
                    .collect();
                out.push(String::new());
                out.push(format!(
                    "{}: {} run(s) did not catch up within the {} s timeout: {}.",
                    sys.name(),
                    timeouts.len(),
                    timeouts[0].get("timeout_s").unwrap_or("?"),
                    applied.join("; ")
                ));
            }
            for r in results
                .iter()
                .filter(|r| r.workload == wl && r.get("status") == Some("failed"))
            {
                out.push(String::new());
                out.push(format!(
                    "{} rep {} failed: {}",
                    r.system.name(),
                    r.rep,
                    r.get("error").unwrap_or("?")
                ));
            }
            if !ratios.is_empty() {
                out.push(String::new());
                out.push(format!(
                    "Ratio of median {unit} (> 1: pgrepl faster): {}",
                    ratios.join(", ")
                ));
            }
        } else {
            out.push(format!(
                "### {} — both nodes write, then catch-up (medians, [min – max])",
                wl.name()
            ));
            out.push(String::new());
            out.push("| system | converged/runs | tps node1 | tps node2 | catch-up s | node1 CPU s | node2 CPU s | pgrepl process CPU s |".into());
            out.push("|---|---|---|---|---|---|---|---|".into());
            for sys in &systems {
                let total = results
                    .iter()
                    .filter(|r| r.workload == wl && r.system == *sys)
                    .count();
                let runs = groups.get(&(wl, *sys)).cloned().unwrap_or_default();
                let cell = |m: &str| {
                    metric(&runs, m).map_or_else(
                        || "–".to_owned(),
                        |(lo, med, hi)| format!("**{}** [{} – {}]", fmt(med), fmt(lo), fmt(hi)),
                    )
                };
                out.push(format!(
                    "| {} | {}/{} | {} | {} | {} | {} | {} | {} |",
                    sys.name(),
                    runs.len(),
                    total,
                    cell("tps_a"),
                    cell("tps_b"),
                    cell("catchup_s"),
                    cell("pub_cpu_s"),
                    cell("sub_cpu_s"),
                    if *sys == System::Pgrepl {
                        cell("engine_cpu_s")
                    } else {
                        "(in nodes)".into()
                    },
                ));
            }
        }
    }
    out
}

//! CPU accounting from /proc, as the anchors' `anchors_cpu_snap` / `anchors_cpu_diff`: user +
//! system time of a postmaster and all its children (processes that exit inside the window
//! are not counted), and of this process's own threads (where pgrepl runs).

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_s() -> f64 {
    static HZ: OnceLock<f64> = OnceLock::new();
    *HZ.get_or_init(|| {
        crate::node::clean("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|hz: &f64| *hz > 0.0)
            .unwrap_or(100.0)
    })
}

/// (ppid, utime + stime in ticks, comm) from a `/proc/…/stat` file.
fn parse_stat(text: &str) -> Option<(u32, u64, String)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // After "pid (comm) ": state=0, ppid=1, …, utime=11, stime=12.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime, comm))
}

/// A short title of a server process from its command line, e.g. `walsender`,
/// `logical_replication_apply_worker`, `backend`.
fn title(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let text = text.trim();
    let Some(rest) = text.strip_prefix("postgres: ") else {
        return "postmaster".into();
    };
    let words: Vec<&str> = rest
        .split_whitespace()
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .collect();
    match words.first() {
        Some(&"walsender") => "walsender".into(),
        Some(&"postgres") => "backend".into(),
        _ => words.join("_"),
    }
}

/// CPU ticks of a set of processes or threads, keyed by id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot(BTreeMap<u32, (u64, String)>);

/// The postmaster `pm` and its children.
pub(crate) fn snapshot_server(pm: u32) -> Snapshot {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Snapshot(out);
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((ppid, ticks, _)) = parse_stat(&stat) else {
            continue;
        };
        if pid == pm || ppid == pm {
            out.insert(pid, (ticks, title(pid)));
        }
    }
    Snapshot(out)
}

/// This process's threads (the harness and the in-process pgrepl link).
pub(crate) fn snapshot_self() -> Snapshot {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
                && let Some((_, ticks, comm)) = parse_stat(&stat)
            {
                out.insert(tid, (ticks, comm));
            }
        }
    }
    Snapshot(out)
}

/// This whole process, in seconds of CPU (threads that ended included).
pub(crate) fn self_total_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0.0, |(_, ticks, _)| ticks as f64 / ticks_per_s())
}

/// CPU used between two snapshots.
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    /// Seconds, all processes (threads) alive at the second snapshot.
    pub(crate) total_s: f64,
    /// Seconds per title, largest first.
    pub(crate) by_title: Vec<(String, f64)>,
}

impl Usage {
    /// `title:secs` of the busiest, or `-`.
    pub(crate) fn busiest(&self) -> String {
        self.by_title
            .first()
            .map_or_else(|| "-".into(), |(t, s)| format!("{t}:{s:.2}"))
    }

    /// Every title with its seconds, `a:1.23,b:0.40`.
    pub(crate) fn split(&self) -> String {
        if self.by_title.is_empty() {
            return "-".into();
        }
        self.by_title
            .iter()
            .filter(|(_, s)| *s >= 0.005)
            .map(|(t, s)| format!("{t}:{s:.2}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What `after` used since `before`.
pub(crate) fn diff(before: &Snapshot, after: &Snapshot) -> Usage {
    let hz = ticks_per_s();
    let mut by_title: BTreeMap<String, f64> = BTreeMap::new();
    let mut total = 0.0;
    for (id, (ticks, name)) in &after.0 {
        let base = before.0.get(id).map_or(0, |(t, _)| *t);
        let secs = ticks.saturating_sub(base) as f64 / hz;
        total += secs;
        *by_title.entry(name.clone()).or_default() += secs;
    }
    let mut by_title: Vec<(String, f64)> = by_title.into_iter().collect();
    by_title.sort_by(|a, b| b.1.total_cmp(&a.1));
    Usage {
        total_s: total,
        by_title,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_spaces_in_comm() {
        let line = "123 (tokio (rt) 1) S 45 1 1 0 -1 4194560 1 0 0 0 250 31 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some((45, 281, "tokio (rt) 1".into())));
    }
}

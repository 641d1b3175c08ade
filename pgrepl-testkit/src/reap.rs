//! Cleaning up after test processes that died without running their destructors.
//!
//! A cluster is removed by `Drop`, which also runs while a test panics. A process killed hard
//! (SIGKILL, a CI timeout) runs no destructor; for that:
//!
//! * its servers stop by themselves: each `postgres` is started under a small `sh` watchdog
//!   that holds the read end of a pipe whose write end only the test process has; when that
//!   process dies, the kernel closes the pipe and the watchdog sends the postmaster SIGQUIT
//!   (immediate shutdown);
//! * its directories are removed by the next test process that starts a cluster: every
//!   cluster directory and cache temporary is named with the pid and start time of the process
//!   that made it, and [`reap_stale_dirs`] removes those whose process is gone (stopping any
//!   server still running in them first). Directories kept for a post-mortem (a failed test,
//!   or `PGREPL_KEEP=1`) are left alone for a day.

use std::path::Path;
use std::sync::Once;
use std::time::{Duration, SystemTime};

use crate::fsutil;
use crate::process::{self, ServerUser};

/// The prefix of every cluster directory in the base directory.
pub(crate) const CLUSTER_DIR_PREFIX: &str = "pgrepl-test-";
/// The file in a cluster directory that names the bin directory its server runs from.
pub(crate) const OWNER_FILE: &str = "OWNER";
/// The file in a cluster directory kept on purpose.
pub(crate) const KEPT_FILE: &str = "KEPT";
/// How long a kept directory is left alone.
const KEEP_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// Runs [`reap_stale_dirs`] once per process (before the first cluster starts).
pub(crate) fn reap_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        reap_stale_dirs();
    });
}

/// Removes the cluster directories (`<base>/pgrepl-test-*`, see [`Cluster`](crate::Cluster))
/// and cache temporaries of test processes that no longer run, stopping any server left in
/// them. Returns how many directories it removed. Errors are ignored: a directory that cannot
/// be removed now is tried again next time.
pub fn reap_stale_dirs() -> usize {
    let mut removed = 0;
    let base = fsutil::base_dir();
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(CLUSTER_DIR_PREFIX)
                && owner_gone(&name)
                && reap_cluster_dir(&entry.path())
            {
                removed += 1;
            }
        }
    }
    for cache in ["install", "template"] {
        let dir = base.join("pgrepl-testkit").join(cache);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-")
                && owner_gone(&name)
                && std::fs::remove_dir_all(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

fn owner_gone(name: &str) -> bool {
    match fsutil::owner_of_suffix(name) {
        Some((pid, start)) => !process::process_alive(pid, Some(start)),
        None => false,
    }
}

/// Stops a server left running in `dir` and removes `dir`, unless it is kept and young.
fn reap_cluster_dir(dir: &Path) -> bool {
    if let Ok(meta) = std::fs::metadata(dir.join(KEPT_FILE)) {
        let age = meta
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        if age.is_none_or(|age| age < KEEP_FOR) {
            return false;
        }
    }
    let data = dir.join("data");
    if data.join("postmaster.pid").exists()
        && let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE))
        && let Some(bin_dir) = owner.lines().next()
        && let Ok(user) = ServerUser::get()
    {
        let mut cmd = user.command(Path::new(bin_dir).join("pg_ctl"));
        cmd.arg("stop").arg("--pgdata").arg(&data).args([
            "--mode=immediate",
            "--wait",
            "--timeout=30",
            "--silent",
        ]);
        let _ = process::output(&mut cmd, None, Some(Duration::from_secs(40)));
    }
    std::fs::remove_dir_all(dir).is_ok()
}

//! Helpers: child processes of this test binary, and watching processes die.

use std::process::Command;
use std::time::{Duration, Instant};

/// Set in the environment of a child process started by [`child`].
const CHILD_VAR: &str = "PGREPL_TESTKIT_CHILD_MAJOR";

/// A command that runs the (ignored) test `name` of this binary alone in a child process,
/// output not captured, with [`child_major`] returning `major` there.
#[allow(clippy::unwrap_used, reason = "test helper")]
pub(crate) fn child(name: &str, major: u32) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_VAR, major.to_string());
    cmd
}

/// In a child started by [`child`], the major version to test; `None` when the ignored
/// child test is run by hand (it then does nothing).
pub(crate) fn child_major() -> Option<u32> {
    std::env::var(CHILD_VAR).ok()?.parse().ok()
}

/// Whether process `pid` is gone (or a zombie, which no longer runs).
pub(crate) fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("");
            state == "Z" || state == "X"
        }
    }
}

/// Polls `done` every 20 ms until it returns true or `limit` passes; returns its last answer.
pub(crate) fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

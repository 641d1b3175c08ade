//! Running PostgreSQL's programs, as the right OS user.
//!
//! PostgreSQL refuses to run as root (`initdb`, `pg_ctl` and `postgres` all check), and the
//! tests of this project run as root on CI. So when the effective uid is 0 the server programs
//! run as the `postgres` OS user (or `PGREPL_PG_OS_USER`): the child is started with
//! [`CommandExt::uid`]/[`CommandExt::gid`], safe std APIs that call `setgid`/`setuid` (and
//! drop supplementary groups) between fork and exec. Otherwise everything runs as the current
//! user.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The OS user that runs the PostgreSQL server programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerUser {
    /// The current user (not root): no switch needed.
    Current {
        /// Effective uid.
        uid: u32,
    },
    /// Another user, switched to with setuid/setgid; the current process is root.
    Other {
        name: String,
        uid: u32,
        gid: u32,
        home: PathBuf,
    },
}

impl ServerUser {
    /// The user that runs the server, looked up once per process.
    pub(crate) fn get() -> Result<&'static ServerUser> {
        static USER: OnceLock<std::result::Result<ServerUser, (String, String)>> = OnceLock::new();
        match USER.get_or_init(lookup) {
            Ok(user) => Ok(user),
            Err((user, reason)) => Err(Error::ServerUser {
                user: user.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// The uid the server runs as.
    pub(crate) fn uid(&self) -> u32 {
        match self {
            ServerUser::Current { uid } | ServerUser::Other { uid, .. } => *uid,
        }
    }

    /// Whether files the server must own have to be chowned (we are root, it is not).
    pub(crate) fn owner(&self) -> Option<(u32, u32)> {
        match self {
            ServerUser::Current { .. } => None,
            ServerUser::Other { uid, gid, .. } => Some((*uid, *gid)),
        }
    }

    /// A short description for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            ServerUser::Current { uid } => format!("uid {uid} (the current user)"),
            ServerUser::Other { name, uid, .. } => format!("`{name}` (uid {uid})"),
        }
    }

    /// A command for `program` that runs as this user, with a clean `PG*` environment and a
    /// working directory the user can enter.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = clean_command(program);
        if let ServerUser::Other { uid, gid, home, .. } = self {
            cmd.uid(*uid).gid(*gid).env("HOME", home);
        }
        cmd.current_dir("/");
        cmd
    }
}

/// A command with every `PG*` variable removed from its environment (so a developer's
/// `PGHOST` or `PGOPTIONS` cannot redirect or change what the harness does) and the C locale.
pub(crate) fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(b"PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LC_ALL", "C")
        .env("LANG", "C")
        .env_remove("LANGUAGE");
    cmd
}

fn lookup() -> std::result::Result<ServerUser, (String, String)> {
    let euid = current_euid();
    if euid != 0 {
        return Ok(ServerUser::Current { uid: euid });
    }
    let name = std::env::var("PGREPL_PG_OS_USER").unwrap_or_else(|_| "postgres".to_owned());
    if let Some((uid, gid, home)) = passwd_entry(&name) {
        if uid == 0 {
            return Err((name, "it is root (uid 0) as well".to_owned()));
        }
        return Ok(ServerUser::Other {
            name,
            uid,
            gid,
            home,
        });
    }
    // NSS sources other than /etc/passwd (LDAP, systemd-homed…): ask `id`.
    let id = |flag: &str| -> Option<u32> {
        let out = clean_command("id").arg(flag).arg(&name).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(0), _) => Err((name, "it is root (uid 0) as well".to_owned())),
        (Some(uid), Some(gid)) => Ok(ServerUser::Other {
            name,
            uid,
            gid,
            home: PathBuf::from("/"),
        }),
        _ => Err((
            name,
            "no such user exists (looked in /etc/passwd and asked `id`)".to_owned(),
        )),
    }
}

/// The effective uid of this process: the owner of `/proc/self`, else `id -u`.
pub(crate) fn current_euid() -> u32 {
    if let Ok(meta) = std::fs::metadata("/proc/self") {
        return meta.uid();
    }
    clean_command("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(u32::MAX)
}

/// `(uid, gid, home)` of `name` from /etc/passwd.
fn passwd_entry(name: &str) -> Option<(u32, u32, PathBuf)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        let _gecos = fields.next()?;
        let home = PathBuf::from(fields.next()?);
        Some((uid, gid, home))
    })
}

/// A command line, for messages.
pub(crate) fn display(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` to completion, feeding it `stdin`; fails unless it exits 0.
/// Returns its stdout.
pub(crate) fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<String> {
    let out = output(cmd, stdin, None)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(command_failed(cmd, &out))
    }
}

/// Runs `cmd` to completion (killing it after `timeout`, if given) and returns whatever it did.
pub(crate) fn output(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Option<Duration>,
) -> Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting `{}`", display(cmd)), e))?;
    let input = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // Feed stdin and drain both pipes on their own threads, so a chatty child can never
    // deadlock against a full pipe.
    std::thread::scope(|scope| {
        if let (Some(mut pipe), Some(data)) = (input, stdin) {
            scope.spawn(move || {
                // A child that exits early closes its stdin: not our error to report.
                let _ = pipe.write_all(data);
            });
        }
        let out = scope.spawn(move || drain(stdout));
        let err = scope.spawn(move || drain(stderr));
        let status = match timeout {
            None => child.wait(),
            Some(limit) => wait_timeout(&mut child, limit),
        }
        .map_err(|e| Error::io(format!("waiting for `{}`", display(cmd)), e))?;
        Ok(Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    })
}

fn drain<R: std::io::Read>(pipe: Option<R>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut buf);
    }
    buf
}

fn wait_timeout(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            child.kill()?;
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The error for a command that exited non-zero.
pub(crate) fn command_failed(cmd: &Command, out: &Output) -> Error {
    let mut output = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        if !output.is_empty() {
            output.push('\n');
        }
        output.push_str(stdout.trim_end());
    }
    Error::Command {
        command: display(cmd),
        status: out.status.to_string(),
        output,
    }
}

/// Whether process `pid` is alive and (if `start_time` is given) is the same process that
/// had that start time (field 22 of `/proc/PID/stat`), so a recycled pid is not mistaken for
/// the original. Zombies count as dead.
pub(crate) fn process_alive(pid: u32, start_time: Option<u64>) -> bool {
    match proc_stat(pid) {
        None => false,
        Some((state, started)) => {
            state != 'Z' && state != 'X' && start_time.is_none_or(|t| t == started)
        }
    }
}

/// `(state, start time)` from `/proc/PID/stat`.
pub(crate) fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4..=21 come next; start time is field 22, the 19th after the state.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
}

/// This process's pid and start time: what a directory records as its owner.
pub(crate) fn current_process() -> (u32, u64) {
    let pid = std::process::id();
    let start = proc_stat(pid).map_or(0, |(_, t)| t);
    (pid, start)
}

/// Whether `path` is an existing directory.
pub(crate) fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_dir())
}

/// The parent pid of process `pid`, from `/proc/PID/stat`.
pub(crate) fn proc_parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

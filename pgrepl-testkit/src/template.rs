//! initdb once, copy many times.
//!
//! `initdb` takes most of a second; copying its result takes a few tens of milliseconds. So
//! each distinct (installation, server user, initdb options) is initialised once into
//! `<base>/pgrepl-testkit/template/<major>-<hash>/data`, shared by every test process (the
//! directory is built beside its final name and renamed into place, so it is complete
//! whenever it exists), and every cluster starts from a copy of it.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::install::Install;
use crate::process::{self, ServerUser};

/// The options every template is initialised with, before the caller's own.
const INITDB_OPTIONS: [&str; 6] = [
    "--username=postgres",
    "--auth=trust",
    "--encoding=UTF8",
    "--no-locale",
    "--no-sync",
    "--no-instructions",
];

/// The template data directory for `install` with the extra `initdb_args`, made if missing.
pub(crate) fn ensure(
    install: &Install,
    initdb_args: &[String],
    user: &ServerUser,
) -> Result<PathBuf> {
    // One initdb at a time in this process: parallel tests of one binary would otherwise all
    // run initdb for the same template at once, on a machine with two cores.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);

    let uid = user.uid().to_string();
    let mut parts: Vec<&[u8]> = vec![
        install.bin_dir().as_os_str().as_encoded_bytes(),
        install.version().as_bytes(),
        uid.as_bytes(),
    ];
    parts.extend(INITDB_OPTIONS.iter().map(|o| o.as_bytes()));
    parts.extend(initdb_args.iter().map(String::as_bytes));
    let key = fsutil::stable_hash(&parts);
    let dir = fsutil::cache_dir()?
        .join("template")
        .join(format!("{}-{key:016x}", install.major()));
    let dir = fsutil::publish_dir(&dir, |tmp| {
        if let Some((uid, gid)) = user.owner() {
            std::os::unix::fs::chown(tmp, Some(uid), Some(gid))
                .map_err(|e| Error::io(format!("chown {}", tmp.display()), e))?;
        }
        let mut cmd = user.command(install.program("initdb"));
        cmd.arg("--pgdata").arg(tmp.join("data"));
        cmd.args(INITDB_OPTIONS).args(initdb_args);
        process::run(&mut cmd, None)?;
        Ok(())
    })?;
    Ok(dir.join("data"))
}

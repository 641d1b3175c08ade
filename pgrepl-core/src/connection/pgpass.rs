//! The password file (PostgreSQL documentation, "The Password File").
//!
//! Each line is `hostname:port:database:username:password`; any of the first four fields may be
//! `*`; `\:` and `\\` escape a colon and a backslash; lines starting with `#` are comments. The
//! first matching line wins. Like libpq, a file that group or others can read is ignored with a
//! warning, and a Unix-socket connection matches the host name `localhost`.

use std::path::{Path, PathBuf};

use super::config::{ConnectConfig, Host};

/// Finds the password for `cfg` in the pgpass file, if there is one and a line matches.
pub(crate) fn lookup(cfg: &ConnectConfig, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let path = cfg
        .passfile
        .clone()
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let text = read_private(&path)?;
    let host = match &cfg.host {
        Host::Tcp(h) => h.as_str(),
        Host::Unix(_) => "localhost",
    };
    find(&text, host, cfg.port, &cfg.dbname, &cfg.user)
}

fn read_private(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "password file has group or world access; it is ignored (chmod 0600 to use it)"
        );
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The first password in `text` whose line matches; pure, for tests.
fn find(text: &str, host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let fields = split_fields(line);
            let [h, p, d, u, pw] = <[String; 5]>::try_from(fields).ok()?;
            let matches = [h, p, d, u]
                .iter()
                .zip(wanted)
                .all(|(pattern, value)| pattern == "*" || pattern == value);
            matches.then_some(pw)
        })
}

/// Splits a line on unescaped colons into at most five fields (the password keeps any further
/// colons), undoing `\:` and `\\`.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::with_capacity(5);
    let mut current = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    fields.push(current);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    otherhost:5432:*:*:nope\n\
                    127.0.0.1:55432:practice:alice:first\\:pw\n\
                    *:*:*:alice:second\n\
                    *:*:*:bob:back\\\\slash:and:colons\n";
        assert_eq!(
            find(text, "127.0.0.1", 55432, "practice", "alice").as_deref(),
            Some("first:pw")
        );
        assert_eq!(find(text, "h", 1, "db", "alice").as_deref(), Some("second"));
        assert_eq!(
            find(text, "h", 1, "db", "bob").as_deref(),
            Some("back\\slash:and:colons")
        );
        assert_eq!(find(text, "h", 1, "db", "carol"), None);
        assert_eq!(find("short:line", "h", 1, "db", "carol"), None);
    }

    #[test]
    fn file_with_open_permissions_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pgrepl-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        std::fs::write(&file, "*:*:*:*:secret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dsn = format!("host=h user=u passfile={}", file.display());
        let cfg = ConnectConfig::parse_with_env(&dsn, &|_| None).unwrap();
        assert_eq!(cfg.password, None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = ConnectConfig::parse_with_env(&dsn, &|_| None).unwrap();
        assert_eq!(cfg.password.as_deref(), Some("secret"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

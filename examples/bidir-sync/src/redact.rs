//! A last line of defence for passwords.
//!
//! Nothing pgrepl prints is supposed to hold a password: DSNs are shown through
//! `ConnectConfig`'s `Display` (`user@host:port/db`), and connection errors name endpoints,
//! never secrets. Still, a message can quote something a person wrote (a TOML error near a
//! `dsn = "…password=…"` line, a server error that echoes an option), so everything this binary
//! writes to stdout or stderr — messages, tables and log lines — goes through [`redact`] first,
//! which hides
//!
//! - every password the configuration holds (they are registered as soon as it is parsed),
//! - the value of any `password=…` key in key=value text,
//! - the password of any `scheme://user:password@host` URL.

use std::sync::{Mutex, PoisonError};

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// What a hidden secret is replaced with.
pub(crate) const HIDDEN: &str = "********";

/// Remembers a password so that [`redact`] hides it wherever it appears.
pub(crate) fn register_secret(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
        // Longest first, so that a secret containing another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Prints a line to stdout, redacted.
pub(crate) fn say(text: impl AsRef<str>) {
    println!("{}", redact(text.as_ref()));
}

/// `text` with every known secret, `password=…` value and URL password hidden.
pub(crate) fn redact(text: &str) -> String {
    let mut out = hide_url_passwords(&hide_password_keys(text));
    let secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), HIDDEN);
        }
    }
    out
}

/// Hides the value of `password = value` (any case, quoted or not).
fn hide_password_keys(text: &str) -> String {
    const KEY: &str = "password";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower.get(pos..).and_then(|rest| rest.find(KEY)) {
        let key_end = pos + found + KEY.len();
        let after = text.get(key_end..).unwrap_or_default();
        let spaces = after.len() - after.trim_start_matches([' ', '\t']).len();
        let Some(value_part) = after.get(spaces..).and_then(|r| r.strip_prefix('=')) else {
            out.push_str(text.get(pos..key_end).unwrap_or_default());
            pos = key_end;
            continue;
        };
        let value_trimmed = value_part.trim_start_matches([' ', '\t']);
        let value_start = text.len() - value_trimmed.len();
        out.push_str(text.get(pos..value_start).unwrap_or_default());
        let value_len = value_length(value_trimmed);
        out.push_str(HIDDEN);
        pos = value_start + value_len;
    }
    out.push_str(text.get(pos..).unwrap_or_default());
    out
}

/// The length of a key=value DSN value at the start of `s`: a single-quoted string with
/// backslash escapes, or everything up to white space or a character that ends a DSN in the
/// text around it (a double quote, a comma).
fn value_length(s: &str) -> usize {
    let mut chars = s.char_indices();
    if s.starts_with('\'') {
        chars.next();
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '\'' {
                return i + 1;
            }
        }
        return s.len();
    }
    s.find(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .unwrap_or(s.len())
}

/// Hides `secret` in `scheme://user:secret@host`.
fn hide_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = text.get(pos..).and_then(|rest| rest.find("://")) {
        let authority_start = pos + found + 3;
        out.push_str(text.get(pos..authority_start).unwrap_or_default());
        let rest = text.get(authority_start..).unwrap_or_default();
        // The authority ends at the first '/', '?', '#', white space or quote.
        let authority_len = rest
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(rest.len());
        let authority = rest.get(..authority_len).unwrap_or_default();
        match authority.rfind('@').and_then(|at| {
            let userinfo = authority.get(..at)?;
            let colon = userinfo.find(':')?;
            Some((colon, at))
        }) {
            Some((colon, at)) => {
                out.push_str(authority.get(..=colon).unwrap_or_default());
                out.push_str(HIDDEN);
                out.push_str(authority.get(at..).unwrap_or_default());
            }
            None => out.push_str(authority),
        }
        pos = authority_start + authority_len;
    }
    out.push_str(text.get(pos..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_keys_are_hidden() {
        assert_eq!(
            hide_password_keys("host=h password=s3cret user=u"),
            "host=h password=******** user=u"
        );
        assert_eq!(
            hide_password_keys("dsn = \"host=h PASSWORD = 'a b\\' c' port=1\""),
            "dsn = \"host=h PASSWORD = ******** port=1\""
        );
        assert_eq!(
            hide_password_keys("dsn = \"host=h password=x\""),
            "dsn = \"host=h password=********\""
        );
        assert_eq!(
            hide_password_keys("password authentication failed"),
            "password authentication failed"
        );
    }

    #[test]
    fn url_passwords_are_hidden() {
        assert_eq!(
            hide_url_passwords("dsn = \"postgresql://app:pa:ss@db:5432/x?sslmode=require\""),
            "dsn = \"postgresql://app:********@db:5432/x?sslmode=require\""
        );
        assert_eq!(
            hide_url_passwords("postgres://app@db/x and http://127.0.0.1:9187/metrics"),
            "postgres://app@db/x and http://127.0.0.1:9187/metrics"
        );
    }

    #[test]
    fn registered_secrets_are_hidden_anywhere() {
        register_secret("Tr0ub4dor&3");
        assert_eq!(
            redact("it was Tr0ub4dor&3, really"),
            format!("it was {HIDDEN}, really")
        );
    }
}

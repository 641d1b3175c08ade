//! Connection settings: one DSN per node, in libpq's key=value or URL form.
//!
//! pgrepl reads the same DSN for its replication connection and for its ordinary SQL sessions,
//! so a user writes one DSN per node. The accepted keys are libpq's (PostgreSQL documentation,
//! "Connection Strings" and "Parameter Key Words"): `host`, `hostaddr`, `port`, `dbname`, `user`,
//! `password`, `application_name`, `sslmode`, `sslrootcert`, `connect_timeout`, `options`,
//! `channel_binding` and `passfile`. Unset keys fall back to the usual environment variables
//! (`PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT`,
//! `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGPASSFILE`), and a missing password to the pgpass file.
//!
//! A password never appears in `Debug` output or in an error: [`ConnectConfig`]'s `Debug` prints
//! `password: <redacted>`, and parse errors name the offending key, never its value when the
//! key is `password`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::pgpass;

/// The default port of PostgreSQL.
pub const DEFAULT_PORT: u16 = 5432;

/// How a connection uses TLS, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Try TLS first without checking the certificate; use plain TCP if the server has no TLS.
    /// This is libpq's default, and ours.
    #[default]
    Prefer,
    /// Require TLS; do not check the certificate (unless `sslrootcert` is set, in which case the
    /// chain is checked as with `verify-ca`, like libpq).
    Require,
    /// Require TLS and a certificate chain that leads to `sslrootcert`; the host name is not
    /// checked.
    VerifyCa,
    /// Require TLS, a certificate chain that leads to `sslrootcert`, and a certificate issued
    /// for the host name (or IP address) connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, ConfigError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" | "allow" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ConfigError::InvalidValue {
                    key: "sslmode".into(),
                    value: other.into(),
                    expected: "one of disable, prefer, require, verify-ca, verify-full",
                });
            }
        })
    }

    /// The keyword as written in a DSN.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Whether SCRAM channel binding is used over TLS, as libpq's `channel_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBindingMode {
    /// Never bind SCRAM to the TLS channel.
    Disable,
    /// Bind when TLS is in use and the server offers `SCRAM-SHA-256-PLUS` (the default).
    #[default]
    Prefer,
    /// Refuse to authenticate unless the exchange is bound to the TLS channel.
    Require,
}

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address, reached over TCP.
    Tcp(String),
    /// A directory holding the server's Unix-domain socket (`.s.PGSQL.<port>`).
    Unix(PathBuf),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(h) => f.write_str(h),
            Host::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Everything needed to open a connection to one PostgreSQL server.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectConfig {
    /// Where the server is.
    pub host: Host,
    /// The IP address to connect to instead of resolving `host` (`hostaddr`). The certificate
    /// is still checked against `host` with `verify-full`.
    pub hostaddr: Option<String>,
    /// TCP port, or the number in the socket file name for Unix sockets.
    pub port: u16,
    /// The database.
    pub dbname: String,
    /// The role to log in as.
    pub user: String,
    /// The password, if known; never printed.
    pub password: Option<String>,
    /// `application_name` reported to the server (shows in `pg_stat_activity` and
    /// `pg_stat_replication`).
    pub application_name: Option<String>,
    /// TLS policy.
    pub ssl_mode: SslMode,
    /// A PEM file of trusted root certificates, or `system` for the operating system's store.
    pub ssl_root_cert: Option<PathBuf>,
    /// SCRAM channel-binding policy.
    pub channel_binding: ChannelBindingMode,
    /// Give up connecting (TCP, TLS and authentication together) after this long.
    pub connect_timeout: Option<Duration>,
    /// Command-line options sent at start-up (`options`, e.g. `-c statement_timeout=0`).
    pub options: Option<String>,
    /// Where the pgpass file is, when it is not `~/.pgpass`.
    pub passfile: Option<PathBuf>,
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("host", &self.host)
            .field("hostaddr", &self.hostaddr)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("application_name", &self.application_name)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("channel_binding", &self.channel_binding)
            .field("connect_timeout", &self.connect_timeout)
            .field("options", &self.options)
            .field("passfile", &self.passfile)
            .finish()
    }
}

impl fmt::Display for ConnectConfig {
    /// A short, password-free description for logs and errors: `user@host:port/dbname`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

/// A DSN that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The key=value form is malformed (an unterminated quote, a key without `=`).
    #[error("malformed connection string at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset in the DSN.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The URL form is malformed.
    #[error("malformed connection URL: {0}")]
    Url(String),
    /// A key pgrepl does not know.
    #[error(
        "unknown connection option \"{0}\"; known options are host, hostaddr, port, dbname, \
         user, password, application_name, sslmode, sslrootcert, channel_binding, \
         connect_timeout, options and passfile"
    )]
    UnknownKey(String),
    /// A key with a value that is not allowed.
    #[error("invalid value \"{value}\" for connection option \"{key}\": expected {expected}")]
    InvalidValue {
        /// The option.
        key: String,
        /// The value as written (never a password).
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A feature of libpq's DSNs that pgrepl does not support.
    #[error("{0}")]
    Unsupported(String),
    /// No user name was given and none could be found in the environment.
    #[error("no user name: set user= in the DSN or PGUSER")]
    NoUser,
}

impl ConnectConfig {
    /// Parses a DSN in key=value form (`host=… port=…`) or URL form
    /// (`postgresql://user:password@host:port/dbname?sslmode=require`), then fills what is
    /// unset from the environment and the password from the pgpass file.
    pub fn parse(dsn: &str) -> Result<Self, ConfigError> {
        Self::parse_with_env(dsn, &|name| std::env::var(name).ok())
    }

    /// As [`parse`](Self::parse), reading environment variables through `env` (for tests and
    /// for callers that want a sealed environment).
    pub fn parse_with_env(
        dsn: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let trimmed = dsn.trim_start();
        let pairs = if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
            parse_url(trimmed)?
        } else {
            parse_key_values(dsn)?
        };
        let mut raw = RawConfig::default();
        for (key, value) in pairs {
            raw.set(&key, value)?;
        }
        raw.finish(env)
    }

    /// The `host:port` (or socket path) this configuration connects to, for messages.
    pub fn endpoint(&self) -> String {
        match &self.host {
            Host::Tcp(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            Host::Tcp(h) => format!("{h}:{}", self.port),
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), self.port),
        }
    }

    /// Renders this configuration back as a key=value DSN, without the password, e.g. for
    /// printing the DSNs of demo nodes.
    pub fn to_dsn_without_password(&self) -> String {
        let mut out = String::new();
        let mut push = |k: &str, v: &str| {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(&quote_dsn_value(v));
        };
        push("host", &self.host.to_string());
        if let Some(a) = &self.hostaddr {
            push("hostaddr", a);
        }
        push("port", &self.port.to_string());
        push("dbname", &self.dbname);
        push("user", &self.user);
        if self.ssl_mode != SslMode::Prefer {
            push("sslmode", self.ssl_mode.as_str());
        }
        if let Some(r) = &self.ssl_root_cert {
            push("sslrootcert", &r.display().to_string());
        }
        if let Some(a) = &self.application_name {
            push("application_name", a);
        }
        out
    }
}

/// Quotes a value for a key=value DSN when it needs it.
pub fn quote_dsn_value(v: &str) -> String {
    if !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        return v.to_owned();
    }
    let mut q = String::with_capacity(v.len() + 2);
    q.push('\'');
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('\'');
    q
}

#[derive(Default)]
struct RawConfig {
    host: Option<String>,
    hostaddr: Option<String>,
    port: Option<String>,
    dbname: Option<String>,
    user: Option<String>,
    password: Option<String>,
    application_name: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    channel_binding: Option<String>,
    connect_timeout: Option<String>,
    options: Option<String>,
    passfile: Option<String>,
}

impl RawConfig {
    fn set(&mut self, key: &str, value: String) -> Result<(), ConfigError> {
        let slot = match key {
            "host" => &mut self.host,
            "hostaddr" => &mut self.hostaddr,
            "port" => &mut self.port,
            "dbname" => &mut self.dbname,
            "user" => &mut self.user,
            "password" => &mut self.password,
            "application_name" => &mut self.application_name,
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "channel_binding" => &mut self.channel_binding,
            "connect_timeout" => &mut self.connect_timeout,
            "options" => &mut self.options,
            "passfile" => &mut self.passfile,
            // Accepted and ignored: they do not change what pgrepl does.
            "fallback_application_name"
            | "client_encoding"
            | "gssencmode"
            | "keepalives"
            | "target_session_attrs" => return Ok(()),
            "replication" => {
                return Err(ConfigError::Unsupported(
                    "the DSN must not set \"replication\": pgrepl opens replication \
                     connections itself where it needs them"
                        .into(),
                ));
            }
            other => return Err(ConfigError::UnknownKey(other.to_owned())),
        };
        *slot = Some(value);
        Ok(())
    }

    fn finish(self, env: &dyn Fn(&str) -> Option<String>) -> Result<ConnectConfig, ConfigError> {
        let pick = |v: Option<String>, var: &str| v.or_else(|| env(var).filter(|s| !s.is_empty()));
        let host_text = pick(self.host, "PGHOST");
        let hostaddr = pick(self.hostaddr, "PGHOSTADDR");
        if host_text.as_deref().is_some_and(|h| h.contains(',')) {
            return Err(ConfigError::Unsupported(
                "several hosts in one DSN are not supported: give each node its own DSN".into(),
            ));
        }
        let host = match host_text {
            Some(h) if h.starts_with('/') => Host::Unix(PathBuf::from(h)),
            Some(h) if !h.is_empty() => Host::Tcp(h),
            _ => match &hostaddr {
                Some(a) => Host::Tcp(a.clone()),
                None => Host::Tcp("localhost".into()),
            },
        };
        let port = match pick(self.port, "PGPORT") {
            None => DEFAULT_PORT,
            Some(p) => p.trim().parse::<u16>().ok().filter(|p| *p != 0).ok_or(
                ConfigError::InvalidValue {
                    key: "port".into(),
                    value: p.clone(),
                    expected: "a TCP port number from 1 to 65535",
                },
            )?,
        };
        let user = pick(self.user, "PGUSER")
            .or_else(|| env("USER").filter(|s| !s.is_empty()))
            .ok_or(ConfigError::NoUser)?;
        let dbname = pick(self.dbname, "PGDATABASE").unwrap_or_else(|| user.clone());
        let ssl_mode = match pick(self.sslmode, "PGSSLMODE") {
            Some(m) => SslMode::parse(&m)?,
            None => SslMode::Prefer,
        };
        let channel_binding = match pick(self.channel_binding, "PGCHANNELBINDING").as_deref() {
            None | Some("prefer") => ChannelBindingMode::Prefer,
            Some("disable") => ChannelBindingMode::Disable,
            Some("require") => ChannelBindingMode::Require,
            Some(other) => {
                return Err(ConfigError::InvalidValue {
                    key: "channel_binding".into(),
                    value: other.into(),
                    expected: "one of disable, prefer, require",
                });
            }
        };
        let connect_timeout = match pick(self.connect_timeout, "PGCONNECT_TIMEOUT") {
            None => None,
            Some(t) => {
                let secs: i64 = t.trim().parse().map_err(|_| ConfigError::InvalidValue {
                    key: "connect_timeout".into(),
                    value: t.clone(),
                    expected: "a whole number of seconds",
                })?;
                // libpq: zero or negative means wait forever; two seconds is the minimum.
                (secs > 0).then(|| Duration::from_secs(secs.max(2).unsigned_abs()))
            }
        };
        let passfile = pick(self.passfile, "PGPASSFILE").map(PathBuf::from);
        let mut cfg = ConnectConfig {
            host,
            hostaddr,
            port,
            dbname,
            user,
            // libpq treats an empty password as none, wherever it came from: an empty
            // PGPASSWORD still lets the pgpass file supply one.
            password: self
                .password
                .or_else(|| env("PGPASSWORD"))
                .filter(|p| !p.is_empty()),
            application_name: pick(self.application_name, "PGAPPNAME"),
            ssl_mode,
            ssl_root_cert: pick(self.sslrootcert, "PGSSLROOTCERT").map(PathBuf::from),
            channel_binding,
            connect_timeout,
            options: pick(self.options, "PGOPTIONS"),
            passfile,
        };
        if cfg.password.is_none() {
            cfg.password = pgpass::lookup(&cfg, env);
        }
        Ok(cfg)
    }
}

/// Splits libpq's key=value form: `key = value` pairs separated by white space, values
/// optionally single-quoted with `\'` and `\\` escapes.
fn parse_key_values(dsn: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut chars = dsn.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return Ok(out);
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            return Err(ConfigError::Syntax {
                offset: start,
                reason: "expected \"=\" after a key",
            });
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(ConfigError::Syntax {
                            offset: start,
                            reason: "unterminated quoted value",
                        });
                    }
                    Some((_, '\'')) => break,
                    Some((at, '\\')) => match chars.next() {
                        Some((_, c)) => value.push(c),
                        None => {
                            return Err(ConfigError::Syntax {
                                offset: at,
                                reason: "a backslash at the end of the string",
                            });
                        }
                    },
                    Some((_, c)) => value.push(c),
                }
            }
        } else {
            while let Some((at, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    match chars.next() {
                        Some((_, c)) => value.push(c),
                        None => {
                            return Err(ConfigError::Syntax {
                                offset: at,
                                reason: "a backslash at the end of the string",
                            });
                        }
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// Splits the URL form: `postgresql://[user[:password]@][host][:port][/dbname][?k=v&…]`.
fn parse_url(url: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or_else(|| ConfigError::Url("it must start with postgresql://".into()))?;
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    let mut out = Vec::new();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            out.push(("user".into(), percent_decode(user, "user")?));
        }
        if let Some(p) = password {
            out.push(("password".into(), percent_decode(p, "password")?));
        }
    }
    if hostport.contains(',') {
        return Err(ConfigError::Unsupported(
            "several hosts in one DSN are not supported: give each node its own DSN".into(),
        ));
    }
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| ConfigError::Url("an IPv6 address misses its closing \"]\"".into()))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => {
                return Err(ConfigError::Url(
                    "unexpected text after the IPv6 address".into(),
                ));
            }
        };
        (h, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if !host.is_empty() {
        out.push(("host".into(), percent_decode(host, "host")?));
    }
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        out.push(("port".into(), percent_decode(p, "port")?));
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.push(("dbname".into(), percent_decode(db, "dbname")?));
    }
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                ConfigError::Url(format!("query parameter without \"=\": {pair}"))
            })?;
            let k = percent_decode(k, "a query parameter name")?;
            let v = percent_decode(v, &k)?;
            out.push((k, v));
        }
    }
    Ok(out)
}

fn percent_decode(s: &str, what: &str) -> Result<String, ConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => out.push(v),
                None => {
                    return Err(ConfigError::Url(format!(
                        "bad percent-encoding in the {what}"
                    )));
                }
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ConfigError::Url(format!("the {what} is not valid UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(dsn: &str) -> Result<ConnectConfig, ConfigError> {
        ConnectConfig::parse_with_env(dsn, &no_env)
    }

    #[test]
    fn key_value_form() {
        let c = parse(
            "host=127.0.0.1 port=55432 dbname=practice user=postgres password='a b\\'c' \
             sslmode=verify-full sslrootcert=/tmp/ca.pem connect_timeout=5 application_name=x",
        )
        .unwrap();
        assert_eq!(c.host, Host::Tcp("127.0.0.1".into()));
        assert_eq!(c.port, 55432);
        assert_eq!(c.dbname, "practice");
        assert_eq!(c.user, "postgres");
        assert_eq!(c.password.as_deref(), Some("a b'c"));
        assert_eq!(c.ssl_mode, SslMode::VerifyFull);
        assert_eq!(c.ssl_root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(c.application_name.as_deref(), Some("x"));
    }

    #[test]
    fn spaces_around_equals_and_empty_quoted_value() {
        let c = parse("host = /tmp  user = bob dbname=''").unwrap();
        assert_eq!(c.host, Host::Unix("/tmp".into()));
        assert_eq!(c.user, "bob");
        assert_eq!(c.dbname, "");
    }

    #[test]
    fn url_form() {
        let c = parse("postgresql://al%40ice:p%3Ass@db.example.com:6543/my%20db?sslmode=require&application_name=app")
            .unwrap();
        assert_eq!(c.user, "al@ice");
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        assert_eq!(c.host, Host::Tcp("db.example.com".into()));
        assert_eq!(c.port, 6543);
        assert_eq!(c.dbname, "my db");
        assert_eq!(c.ssl_mode, SslMode::Require);
        let c = parse("postgres://bob@[::1]:5433/db").unwrap();
        assert_eq!(c.host, Host::Tcp("::1".into()));
        assert_eq!(c.port, 5433);
        assert_eq!(c.endpoint(), "[::1]:5433");
        let c = parse("postgresql://postgres@127.0.0.1:55433/practice").unwrap();
        assert_eq!(c.dbname, "practice");
        assert_eq!(c.password, None);
    }

    #[test]
    fn defaults_and_environment() {
        let env = |k: &str| match k {
            "PGUSER" => Some("envuser".into()),
            "PGPORT" => Some("6000".into()),
            "PGPASSWORD" => Some("envpw".into()),
            "PGSSLMODE" => Some("disable".into()),
            _ => None,
        };
        let c = ConnectConfig::parse_with_env("host=h", &env).unwrap();
        assert_eq!(c.user, "envuser");
        assert_eq!(c.dbname, "envuser");
        assert_eq!(c.port, 6000);
        assert_eq!(c.password.as_deref(), Some("envpw"));
        assert_eq!(c.ssl_mode, SslMode::Disable);
        // An empty password is no password, as in libpq.
        let empty = |k: &str| (k == "PGPASSWORD").then(String::new);
        let c = ConnectConfig::parse_with_env("host=h user=u", &empty).unwrap();
        assert_eq!(c.password, None);
        let c = ConnectConfig::parse_with_env("host=h user=u password=''", &no_env).unwrap();
        assert_eq!(c.password, None);
        // The DSN wins over the environment.
        let c = ConnectConfig::parse_with_env("host=h user=u password=p port=1", &env).unwrap();
        assert_eq!((c.user.as_str(), c.port), ("u", 1));
        assert_eq!(c.password.as_deref(), Some("p"));
    }

    #[test]
    fn errors_are_typed_and_never_show_a_password() {
        assert!(matches!(parse("host"), Err(ConfigError::Syntax { .. })));
        assert!(matches!(
            parse("user=a password='x"),
            Err(ConfigError::Syntax { .. })
        ));
        assert!(matches!(parse("user=a hots=x"), Err(ConfigError::UnknownKey(k)) if k == "hots"));
        assert!(matches!(
            parse("user=a port=99999"),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse("user=a sslmode=maybe"),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse("user=a host=a,b"),
            Err(ConfigError::Unsupported(_))
        ));
        assert!(matches!(parse("host=a"), Err(ConfigError::NoUser)));
        assert!(matches!(
            parse("postgresql://u@h/db?sslmode"),
            Err(ConfigError::Url(_))
        ));
        assert!(matches!(
            parse("postgresql://u:%zz@h/db"),
            Err(ConfigError::Url(_))
        ));
        let c = parse("user=a password=hunter2").unwrap();
        let shown = format!("{c:?} {c}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!c.to_dsn_without_password().contains("hunter2"));
    }

    #[test]
    fn round_trips_through_dsn_text() {
        let c = parse("host=/var/run/pg port=5 dbname='a b' user=me sslmode=verify-ca").unwrap();
        let again = parse(&c.to_dsn_without_password()).unwrap();
        assert_eq!(c, again);
    }
}

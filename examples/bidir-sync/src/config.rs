//! The configuration file (`pgrepl.toml`), and what it becomes: a [`Mesh`].
//!
//! ```toml
//! [cluster]
//! name = "practice"                      # names slots and origins: [a-z0-9_]
//! tables = ["public.users"]              # or: schemas = ["public"]
//! conflict_resolver = "last_update_wins" # default
//! # binary = false                       # binary pgoutput values (same types on every node)
//! # spool_dir = "/var/lib/pgrepl/spool"  # default: <temp dir>/pgrepl-spool
//! [cluster.conflict_resolvers]           # optional, per conflict kind
//! update_missing = "error"
//!
//! [[nodes]]
//! name = "node1"
//! dsn = "host=10.0.0.1 dbname=practice user=pgrepl"
//!
//! [metrics]
//! listen = "127.0.0.1:9187"
//! ```
//!
//! Everything is checked before any node is contacted: unknown keys (a typo is an error, not a
//! silently ignored setting), resolver and conflict-kind names, node names, table names and
//! every DSN. Every message names the file, the setting and the fix. Passwords found in DSNs
//! are registered with [`crate::redact`] at once, so no later message can show them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgrepl_apply::{Mesh, MeshError, MeshSpec, NodeSpec, TableSelection};
use pgrepl_conflict::{ConflictKind, ResolverSet, builtin};
use pgrepl_core::connection::ConnectConfig;
use serde::Deserialize;

use crate::failure::Failure;
use crate::redact;

/// How long connecting may take when the DSN sets no `connect_timeout`.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The resolver used when the file names none.
pub(crate) const DEFAULT_RESOLVER: &str = "last_update_wins";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster: RawCluster,
    #[serde(default)]
    nodes: Vec<RawNode>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    tables: Option<Vec<String>>,
    schemas: Option<Vec<String>>,
    conflict_resolver: Option<String>,
    #[serde(default)]
    conflict_resolvers: BTreeMap<String, String>,
    #[serde(default)]
    binary: bool,
    spool_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    dsn: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

/// A checked configuration.
#[derive(Debug)]
pub(crate) struct Config {
    /// The mesh it describes.
    pub(crate) mesh: Mesh,
    /// Where `run` serves metrics and live status.
    pub(crate) metrics: Option<SocketAddr>,
    /// The default resolver's name and the per-kind overrides, for messages.
    pub(crate) resolvers: (String, Vec<(ConflictKind, String)>),
}

impl Config {
    /// Reads and checks the file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Config, Failure> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let fix = if e.kind() == std::io::ErrorKind::NotFound {
                "\n  fix: pass the right file with --config (the README shows a complete example)"
            } else {
                ""
            };
            Failure::new(format!(
                "cannot read the configuration file {}: {e}{fix}",
                path.display()
            ))
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Checks the configuration `text`; `origin` names it in messages.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Config, Failure> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // The message only: toml's Display quotes the offending line, which may hold a
            // DSN with a password.
            let at = e
                .span()
                .map(|span| {
                    let line = text
                        .get(..span.start)
                        .unwrap_or_default()
                        .matches('\n')
                        .count();
                    format!(", line {}", line + 1)
                })
                .unwrap_or_default();
            Failure::new(format!(
                "{origin}{at}: {}\n  fix: correct the file (the README's \"Configuration \
                 reference\" lists every setting)",
                e.message().trim_end()
            ))
        })?;
        let bad = |what: String| Failure::new(format!("{origin}: {what}"));

        let cluster = raw.cluster;
        let tables = match (cluster.tables, cluster.schemas) {
            (Some(_), Some(_)) => {
                return Err(bad("[cluster] sets both tables and schemas; \
                     set one: tables = [\"public.users\", …] or schemas = [\"public\"]"
                    .into()));
            }
            (None, None) => {
                return Err(bad("[cluster] names nothing to replicate; \
                     add tables = [\"public.users\", …] or schemas = [\"public\"]"
                    .into()));
            }
            (Some(tables), None) => {
                let mut out = Vec::new();
                for t in &tables {
                    let parsed = parse_table_name(t).map_err(|why| {
                        bad(format!(
                            "[cluster] tables: \"{t}\" is not a table name: {why}; write \
                             \"schema.table\" or \"table\" (schema public)"
                        ))
                    })?;
                    if !out.contains(&parsed) {
                        out.push(parsed);
                    }
                }
                TableSelection::Tables(out)
            }
            (None, Some(schemas)) => {
                let mut out = Vec::new();
                for s in &schemas {
                    let parsed = parse_identifier(s).map_err(|why| {
                        bad(format!(
                            "[cluster] schemas: \"{s}\" is not a schema name: {why}"
                        ))
                    })?;
                    if !out.contains(&parsed) {
                        out.push(parsed);
                    }
                }
                TableSelection::Schemas(out)
            }
        };

        let default_name = cluster
            .conflict_resolver
            .unwrap_or_else(|| DEFAULT_RESOLVER.to_owned());
        let default =
            builtin(&default_name).map_err(|e| bad(format!("[cluster] conflict_resolver: {e}")))?;
        let mut resolvers = ResolverSet::new(default);
        let mut overrides = Vec::new();
        for (kind, name) in &cluster.conflict_resolvers {
            let k: ConflictKind = kind
                .parse()
                .map_err(|e| bad(format!("[cluster.conflict_resolvers]: {e}")))?;
            let r = builtin(name)
                .map_err(|e| bad(format!("[cluster.conflict_resolvers] {kind}: {e}")))?;
            resolvers = resolvers.with_override(k, r);
            overrides.push((k, name.clone()));
        }

        let mut nodes = Vec::new();
        for (i, node) in raw.nodes.iter().enumerate() {
            let mut dsn = ConnectConfig::parse(&node.dsn).map_err(|e| {
                bad(format!(
                    "node \"{}\" (the {} [[nodes]] entry): dsn: {e}",
                    node.name,
                    ordinal(i + 1)
                ))
            })?;
            if let Some(p) = &dsn.password {
                redact::register_secret(p);
            }
            if dsn.connect_timeout.is_none() {
                dsn.connect_timeout = Some(DEFAULT_CONNECT_TIMEOUT);
            }
            nodes.push(NodeSpec {
                name: node.name.clone(),
                dsn,
            });
        }

        let metrics = match raw.metrics.and_then(|m| m.listen) {
            None => None,
            Some(listen) => Some(listen.parse::<SocketAddr>().map_err(|_| {
                bad(format!(
                    "[metrics] listen = \"{listen}\" is not an address to listen on; write \
                     IP:PORT, e.g. \"127.0.0.1:9187\" (or \"0.0.0.0:9187\" for every interface)"
                ))
            })?),
        };

        let spool_dir = cluster
            .spool_dir
            .unwrap_or_else(|| std::env::temp_dir().join("pgrepl-spool"));
        let mesh = Mesh::new(MeshSpec {
            cluster: cluster.name,
            nodes,
            tables,
            resolvers: Arc::new(resolvers),
            binary: cluster.binary,
            spool_dir,
        })
        .map_err(|e| {
            let fix = match &e {
                MeshError::Name(_) => {
                    "\n  fix: names are what slots and origins are named after: \
                     lower-case letters, digits and underscores, short enough for 63 bytes"
                }
                _ => "",
            };
            bad(format!("{e}{fix}"))
        })?;
        Ok(Config {
            mesh,
            metrics,
            resolvers: (default_name, overrides),
        })
    }

    /// Whether the configured resolvers make nodes converge under concurrent writes.
    pub(crate) fn non_converging_resolvers(&self) -> Vec<String> {
        let (default, overrides) = &self.resolvers;
        let mut out = Vec::new();
        let bad = |n: &str| matches!(n, "apply_remote" | "keep_local");
        if bad(default) {
            out.push(format!("conflict_resolver = \"{default}\""));
        }
        for (kind, name) in overrides {
            if bad(name) {
                out.push(format!("{kind} = \"{name}\""));
            }
        }
        out
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `schema.table`, `table` (schema `public`), with SQL's rules: unquoted names fold to lower
/// case, `"Quoted"` names are taken as written.
pub(crate) fn parse_table_name(text: &str) -> Result<(String, String), String> {
    let parts = split_identifiers(text)?;
    match parts.as_slice() {
        [table] => Ok(("public".to_owned(), table.clone())),
        [schema, table] => Ok((schema.clone(), table.clone())),
        _ => Err("too many dots".to_owned()),
    }
}

fn parse_identifier(text: &str) -> Result<String, String> {
    let mut parts = split_identifiers(text)?;
    match (parts.pop(), parts.is_empty()) {
        (Some(name), true) => Ok(name),
        _ => Err("a schema name has no dots (quote it if it really has one)".to_owned()),
    }
}

fn split_identifiers(text: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("an unterminated quoted name".to_owned()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != '.') {
                if c == '"' || c.is_whitespace() {
                    return Err(format!(
                        "unexpected {c:?} (quote names with such characters)"
                    ));
                }
                part.extend(c.to_lowercase());
            }
        }
        if part.is_empty() {
            return Err("an empty name".to_owned());
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => {}
            Some(c) => return Err(format!("unexpected {c:?} after a quoted name")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[cluster]
name = "practice"
tables = ["public.users", "orders", '"Sales"."Q1"']
conflict_resolver = "last_update_wins"
[cluster.conflict_resolvers]
update_missing = "error"

[[nodes]]
name = "node1"
dsn = "host=127.0.0.1 port=55432 dbname=practice user=postgres"

[[nodes]]
name = "node2"
dsn = "postgresql://postgres@127.0.0.1:55433/practice"

[metrics]
listen = "127.0.0.1:9187"
"#;

    fn error(text: &str) -> String {
        Config::parse(text, "pgrepl.toml").unwrap_err().message
    }

    #[test]
    fn a_good_file() {
        let c = Config::parse(GOOD, "pgrepl.toml").unwrap();
        assert_eq!(c.mesh.spec().cluster, "practice");
        assert_eq!(c.mesh.links().len(), 2);
        assert_eq!(
            c.mesh.spec().tables,
            TableSelection::Tables(vec![
                ("public".into(), "users".into()),
                ("public".into(), "orders".into()),
                ("Sales".into(), "Q1".into()),
            ])
        );
        assert_eq!(c.metrics, Some("127.0.0.1:9187".parse().unwrap()));
        assert_eq!(
            c.mesh.spec().nodes[0].dsn.connect_timeout,
            Some(DEFAULT_CONNECT_TIMEOUT)
        );
        assert!(c.non_converging_resolvers().is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        let e =
            error("[cluster]\nname = \"x\"\ntables = [\"t\"]\nconflict_resolver = \"newest\"\n");
        assert!(
            e.contains("unknown conflict resolver \"newest\"") && e.contains("last_update_wins"),
            "{e}"
        );
        let e = error(&GOOD.replace("update_missing", "update_gone"));
        assert!(e.contains("unknown conflict kind \"update_gone\""), "{e}");
        let e = error(&GOOD.replace("name = \"node2\"", "name = \"node1\""));
        assert!(e.contains("\"node1\" is used twice"), "{e}");
        let e = error(&GOOD.replace("name = \"node2\"", "name = \"Node-2\""));
        assert!(e.contains("invalid node name \"Node-2\""), "{e}");
        let e = error(&GOOD.replace("tables =", "tabels ="));
        assert!(e.contains("unknown field `tabels`"), "{e}");
        let e = error(&GOOD.replace("9187\"", "x\""));
        assert!(e.contains("[metrics] listen"), "{e}");
        let e = error("[cluster\nname = 1");
        assert!(e.starts_with("pgrepl.toml, line 1:"), "{e}");
        let e = error(&GOOD.replace("tables = [", "schemas = [\"public\"]\ntables = ["));
        assert!(e.contains("both tables and schemas"), "{e}");
    }

    #[test]
    fn toml_errors_do_not_quote_the_line() {
        let text = GOOD.replace(
            "user=postgres\"",
            "user=postgres password=hunter2xyz\" oops",
        );
        let e = error(&text);
        assert!(!e.contains("hunter2xyz"), "{e}");
    }

    #[test]
    fn table_names_follow_sql() {
        assert_eq!(
            parse_table_name("Public.Users").unwrap(),
            ("public".into(), "users".into())
        );
        assert_eq!(
            parse_table_name("\"a.b\".\"C\"\"d\"").unwrap(),
            ("a.b".into(), "C\"d".into())
        );
        assert!(parse_table_name("a.b.c").is_err());
        assert!(parse_table_name("a..b").is_err());
        assert!(parse_table_name("\"open").is_err());
        assert!(parse_table_name("two words").is_err());
    }
}

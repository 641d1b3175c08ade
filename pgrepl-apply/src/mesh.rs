//! A mesh: every node replicates into every other node.
//!
//! N nodes make N×(N−1) directed [`Link`]s. [`Mesh::setup`] prepares the nodes for them —
//! idempotently, after checking everything that would block replication and explaining each
//! problem with its fix — and [`Mesh::teardown`] removes what setup created, so no node keeps
//! WAL for a link that no longer runs.
//!
//! What setup creates on each node (names from [`crate::names`]):
//!
//! - schema `pgrepl` with `pgrepl.conflict_history` ([`crate::history`]);
//! - the publication `pgrepl_<cluster>` of the replicated tables (never of schema `pgrepl`);
//! - one logical slot per link *from* this node, `pgrepl_<cluster>_to_<target>`;
//! - one replication origin per link *into* this node, `pgrepl_<cluster>_from_<source>`;
//! - with `partition_sequences`, a node-disjoint stride for every sequence owned by a replicated
//!   table: node k of N (in configuration order, from 1) gets `INCREMENT BY N` and values
//!   ≡ k (mod N), restarted above every value any node has handed out, so inserts on different
//!   nodes never collide on generated keys.
//!
//! Setup does not copy data: the nodes' tables must already hold the same rows (or be empty)
//! when the slots are created; every change after that replicates.

use std::path::PathBuf;
use std::sync::Arc;

use pgrepl_conflict::ResolverSet;
use pgrepl_core::connection::{Client, ConnectConfig, Error as ConnError};
use pgrepl_core::sql::quote_qualified;

use crate::history::CREATE_HISTORY;
use crate::link::LinkConfig;
use crate::names::{LinkNames, NameError, publication_name, validate_name};

/// A node of the mesh.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Its name (`[a-z0-9_]`).
    pub name: String,
    /// How to reach it.
    pub dsn: ConnectConfig,
}

/// Which tables replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSelection {
    /// These tables, as (schema, name).
    Tables(Vec<(String, String)>),
    /// Every table in these schemas (now and later: `FOR TABLES IN SCHEMA`).
    Schemas(Vec<String>),
}

/// A mesh's configuration.
#[derive(Debug, Clone)]
pub struct MeshSpec {
    /// The cluster name, part of every object's name.
    pub cluster: String,
    /// The nodes, in configuration order.
    pub nodes: Vec<NodeSpec>,
    /// What replicates.
    pub tables: TableSelection,
    /// Conflict resolution for every link.
    pub resolvers: Arc<ResolverSet>,
    /// Binary pgoutput values.
    pub binary: bool,
    /// Where links spool streamed transactions (each link gets a subdirectory).
    pub spool_dir: PathBuf,
}

/// One thing that blocks replication on a node, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The node.
    pub node: String,
    /// What is wrong.
    pub what: String,
    /// How to fix it.
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}: {} — fix: {}", self.node, self.what, self.fix)
    }
}

/// Why setup or teardown failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The mesh's configuration is inconsistent.
    #[error("{0}")]
    Config(String),
    /// A name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A node could not be reached, or a statement failed.
    #[error("node {node}: {source}")]
    Connection {
        /// The node.
        node: String,
        /// What happened.
        #[source]
        source: Box<ConnError>,
    },
    /// Nodes are not ready for replication.
    #[error(
        "{} problem(s) block replication:\n{}",
        .0.len(),
        .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    )]
    Blocked(Vec<Problem>),
}

/// What setup did, for people.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupReport {
    /// One line per thing created or changed (empty when everything was already in place).
    pub actions: Vec<String>,
}

/// A mesh of nodes.
#[derive(Debug, Clone)]
pub struct Mesh {
    spec: MeshSpec,
}

fn conn_err(node: &str) -> impl Fn(ConnError) -> MeshError + '_ {
    move |e| MeshError::Connection {
        node: node.to_owned(),
        source: Box::new(e),
    }
}

impl Mesh {
    /// Checks the specification: valid, distinct names; at least two nodes; every derived
    /// name within PostgreSQL's limits.
    pub fn new(spec: MeshSpec) -> Result<Mesh, MeshError> {
        validate_name("cluster name", &spec.cluster)?;
        if spec.nodes.len() < 2 {
            return Err(MeshError::Config(format!(
                "a mesh needs at least two nodes; the configuration has {}",
                spec.nodes.len()
            )));
        }
        for (i, n) in spec.nodes.iter().enumerate() {
            validate_name("node name", &n.name)?;
            if spec.nodes.iter().skip(i + 1).any(|m| m.name == n.name) {
                return Err(MeshError::Config(format!(
                    "node name \"{}\" is used twice; every node needs its own name",
                    n.name
                )));
            }
        }
        match &spec.tables {
            TableSelection::Tables(t) if t.is_empty() => {
                return Err(MeshError::Config(
                    "no tables to replicate: list tables or schemas".into(),
                ));
            }
            TableSelection::Schemas(s) if s.is_empty() => {
                return Err(MeshError::Config(
                    "no schemas to replicate: list tables or schemas".into(),
                ));
            }
            TableSelection::Schemas(s) if s.iter().any(|s| s == "pgrepl") => {
                return Err(MeshError::Config(
                    "schema pgrepl holds pgrepl's own bookkeeping and cannot replicate".into(),
                ));
            }
            _ => {}
        }
        let mesh = Mesh { spec };
        for names in mesh.all_links() {
            names?;
        }
        Ok(mesh)
    }

    /// The specification.
    pub fn spec(&self) -> &MeshSpec {
        &self.spec
    }

    fn all_links(&self) -> Vec<Result<LinkNames, NameError>> {
        let mut out = Vec::new();
        for s in &self.spec.nodes {
            for t in &self.spec.nodes {
                if s.name != t.name {
                    out.push(LinkNames::new(&self.spec.cluster, &s.name, &t.name));
                }
            }
        }
        out
    }

    /// Every directed link, source-major.
    pub fn links(&self) -> Vec<LinkNames> {
        self.all_links()
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.spec.nodes.iter().find(|n| n.name == name)
    }

    /// The configuration of one link, with default tuning.
    pub fn link_config(&self, names: &LinkNames) -> Result<LinkConfig, MeshError> {
        let node = |n: &str| {
            self.node(n)
                .map(|s| s.dsn.clone())
                .ok_or_else(|| MeshError::Config(format!("no node named \"{n}\"")))
        };
        let mut cfg = LinkConfig::new(
            names.clone(),
            node(&names.source)?,
            node(&names.target)?,
            Arc::clone(&self.spec.resolvers),
            self.spec
                .spool_dir
                .join(&names.cluster)
                .join(format!("{}_to_{}", names.source, names.target)),
        );
        cfg.binary = self.spec.binary;
        Ok(cfg)
    }

    async fn connect(&self, node: &NodeSpec) -> Result<Client, MeshError> {
        Client::connect(&node.dsn)
            .await
            .map_err(conn_err(&node.name))
    }

    /// Everything that would block replication, on every node (an empty list when none).
    pub async fn check(&self) -> Result<Vec<Problem>, MeshError> {
        let mut problems = Vec::new();
        let n = self.spec.nodes.len();
        for node in &self.spec.nodes {
            let mut client = self.connect(node).await?;
            problems.extend(self.check_node(&mut client, node, n).await?);
        }
        Ok(problems)
    }

    async fn check_node(
        &self,
        client: &mut Client,
        node: &NodeSpec,
        nodes: usize,
    ) -> Result<Vec<Problem>, MeshError> {
        let err = conn_err(&node.name);
        let mut problems = Vec::new();
        let mut problem = |what: String, fix: String| {
            problems.push(Problem {
                node: node.name.clone(),
                what,
                fix,
            })
        };
        let version: u32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .and_then(|r| r.get(0))
            .map_err(&err)?;
        if version < 150_000 {
            problem(
                format!("PostgreSQL {version} is too old"),
                "pgrepl needs PostgreSQL 15 or later".into(),
            );
        }
        let setting = |rows: &[pgrepl_core::connection::Row], name: &str| -> Option<String> {
            rows.iter()
                .find(|r| r.get_str(0) == Some(name))
                .and_then(|r| r.get_str(1).map(str::to_owned))
        };
        let rows = client
            .query(
                "SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY ($1::text[])",
                &[&"{wal_level,track_commit_timestamp,max_replication_slots,max_wal_senders,max_active_replication_origins}"],
            )
            .await
            .map_err(&err)?;
        let links_out = nodes - 1;
        if setting(&rows, "wal_level").as_deref() != Some("logical") {
            problem(
                format!(
                    "wal_level is {}, logical decoding needs logical",
                    setting(&rows, "wal_level").unwrap_or_default()
                ),
                "ALTER SYSTEM SET wal_level = logical; then restart the server".into(),
            );
        }
        if setting(&rows, "track_commit_timestamp").as_deref() != Some("on") {
            problem(
                "track_commit_timestamp is off; conflict detection needs commit timestamps".into(),
                "ALTER SYSTEM SET track_commit_timestamp = on; then restart the server".into(),
            );
        }
        let number = |name: &str| setting(&rows, name).and_then(|v| v.parse::<usize>().ok());
        // Slots from this node, plus origins into it (before PostgreSQL 17 origins share
        // max_replication_slots).
        let origins_share = number("max_active_replication_origins").is_none();
        let slots_needed = if origins_share {
            2 * links_out
        } else {
            links_out
        };
        let in_use: usize = client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name NOT LIKE $1",
                &[&format!("pgrepl\\_{}\\_to\\_%", self.spec.cluster)],
            )
            .await
            .and_then(|r| r.get::<i64>(0))
            .map_err(&err)?
            .try_into()
            .unwrap_or(0);
        if let Some(max) = number("max_replication_slots")
            && max < slots_needed + in_use
        {
            problem(
                format!(
                    "max_replication_slots is {max}; this node needs {slots_needed} for pgrepl \
                     (slots for {links_out} outgoing link(s){}) plus the {in_use} other slot(s) \
                     in use",
                    if origins_share {
                        format!(" and origins for {links_out} incoming")
                    } else {
                        String::new()
                    }
                ),
                format!(
                    "ALTER SYSTEM SET max_replication_slots = {}; then restart the server",
                    (slots_needed + in_use).max(10)
                ),
            );
        }
        if let Some(max) = number("max_wal_senders")
            && max < links_out
        {
            problem(
                format!("max_wal_senders is {max}; {links_out} outgoing link(s) need that many"),
                format!(
                    "ALTER SYSTEM SET max_wal_senders = {}; then restart the server",
                    links_out.max(10)
                ),
            );
        }
        let role = client
            .query_one(
                "SELECT r.rolsuper, r.rolreplication, \
                        pg_catalog.has_function_privilege('pg_catalog.pg_replication_origin_session_setup(text)', 'EXECUTE'), \
                        pg_catalog.has_parameter_privilege('session_replication_role', 'SET'), \
                        pg_catalog.has_database_privilege(current_database(), 'CREATE') \
                 FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await
            .map_err(&err)?;
        let flag = |i: usize| role.get::<bool>(i).unwrap_or(false);
        let (superuser, replication, origin_fns, srr, create) =
            (flag(0), flag(1), flag(2), flag(3), flag(4));
        let user = node.dsn.user.clone();
        if !superuser {
            if !replication {
                problem(
                    format!("role {user} lacks the REPLICATION attribute (needed for slots)"),
                    format!("ALTER ROLE {user} REPLICATION;"),
                );
            }
            if !origin_fns {
                problem(
                    format!("role {user} may not use replication origins"),
                    format!(
                        "GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), \
                         pg_replication_origin_drop(text), pg_replication_origin_session_setup(text), \
                         pg_replication_origin_xact_setup(pg_lsn, timestamptz), \
                         pg_replication_origin_xact_reset(), pg_replication_origin_progress(text, boolean) \
                         TO {user};"
                    ),
                );
            }
            if !srr {
                problem(
                    format!("role {user} may not set session_replication_role"),
                    format!("GRANT SET ON PARAMETER session_replication_role TO {user};"),
                );
            }
            if !create {
                problem(
                    format!("role {user} may not create schema pgrepl or the publication"),
                    format!("GRANT CREATE ON DATABASE {} TO {user};", node.dsn.dbname),
                );
            }
        }
        // Publishing needs ownership: `CREATE PUBLICATION … FOR TABLE` the owner's rights on
        // each table, `FOR TABLES IN SCHEMA` a superuser (PostgreSQL 15 to 18).
        if !superuser {
            match &self.spec.tables {
                TableSelection::Schemas(schemas) => problem(
                    format!(
                        "role {user} is not a superuser, and publishing every table of a schema \
                         (FOR TABLES IN SCHEMA {}) needs one",
                        schemas.join(", ")
                    ),
                    "list the tables instead (tables = [\"schema.table\", …]; the role must \
                     own them), or run setup as a superuser"
                        .into(),
                ),
                TableSelection::Tables(tables) => {
                    for (schema, table) in tables {
                        let row = client
                            .query_opt(
                                "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE'), \
                                        pg_catalog.pg_get_userbyid(c.relowner)::text \
                                 FROM pg_catalog.pg_class c \
                                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                                 WHERE n.nspname = $1 AND c.relname = $2",
                                &[schema, table],
                            )
                            .await
                            .map_err(&err)?;
                        if let Some(row) = row
                            && !row.get::<bool>(0).unwrap_or(true)
                        {
                            let owner: String = row.get(1).unwrap_or_default();
                            problem(
                                format!(
                                    "role {user} does not own table {schema}.{table} (its owner \
                                     is {owner}); publishing a table and applying changes to \
                                     it need the owner's rights"
                                ),
                                format!(
                                    "ALTER TABLE {} OWNER TO {user}; (or GRANT {owner} TO {user};)",
                                    quote_qualified(schema, table)
                                ),
                            );
                        }
                    }
                }
            }
        }
        // The tables: they exist, and their rows can be identified for UPDATE and DELETE.
        for (schema, table, identity, has_key) in self.tables_on(client, &node.name).await? {
            let qualified = format!("{schema}.{table}");
            match identity.as_str() {
                "missing" => problem(
                    format!("table {qualified} does not exist"),
                    format!(
                        "create {qualified} on {} with the same columns as on the other nodes",
                        node.name
                    ),
                ),
                "n" => problem(
                    format!("table {qualified} has REPLICA IDENTITY NOTHING"),
                    format!(
                        "ALTER TABLE {} REPLICA IDENTITY DEFAULT (with a primary key) or FULL",
                        quote_qualified(&schema, &table)
                    ),
                ),
                "d" if !has_key => problem(
                    format!(
                        "table {qualified} has no primary key, so its updates and deletes \
                         cannot be replicated"
                    ),
                    format!(
                        "add a primary key, or ALTER TABLE {} REPLICA IDENTITY FULL",
                        quote_qualified(&schema, &table)
                    ),
                ),
                _ => {}
            }
        }
        Ok(problems)
    }

    /// The replicated tables as seen on a node: (schema, name, relreplident or "missing",
    /// whether it has a primary key).
    async fn tables_on(
        &self,
        client: &mut Client,
        node: &str,
    ) -> Result<Vec<(String, String, String, bool)>, MeshError> {
        let err = conn_err(node);
        let sql = "SELECT n.nspname, c.relname, c.relreplident::text, \
                          EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                                   WHERE i.indrelid = c.oid AND i.indisprimary) \
                   FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                   WHERE c.relkind IN ('r', 'p') AND ";
        let mut out = Vec::new();
        match &self.spec.tables {
            TableSelection::Tables(tables) => {
                for (schema, name) in tables {
                    let row = client
                        .query_opt(
                            &format!("{sql} n.nspname = $1 AND c.relname = $2"),
                            &[schema, name],
                        )
                        .await
                        .map_err(&err)?;
                    match row {
                        Some(r) => out.push((
                            schema.clone(),
                            name.clone(),
                            r.get(2).map_err(&err)?,
                            r.get(3).map_err(&err)?,
                        )),
                        None => out.push((schema.clone(), name.clone(), "missing".into(), false)),
                    }
                }
            }
            TableSelection::Schemas(schemas) => {
                for schema in schemas {
                    for r in client
                        .query(
                            &format!("{sql} n.nspname = $1 AND NOT c.relispartition ORDER BY 2"),
                            &[schema],
                        )
                        .await
                        .map_err(&err)?
                    {
                        out.push((
                            r.get(0).map_err(&err)?,
                            r.get(1).map_err(&err)?,
                            r.get(2).map_err(&err)?,
                            r.get(3).map_err(&err)?,
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Prepares every node; idempotent. Checks first, and changes nothing if any node has a
    /// blocking problem.
    pub async fn setup(&self, partition_sequences: bool) -> Result<SetupReport, MeshError> {
        let problems = self.check().await?;
        if !problems.is_empty() {
            return Err(MeshError::Blocked(problems));
        }
        let mut report = SetupReport::default();
        let publication = publication_name(&self.spec.cluster);
        let links = self.links();
        for node in &self.spec.nodes {
            let err = conn_err(&node.name);
            let mut client = self.connect(node).await?;
            client.batch_execute(CREATE_HISTORY).await.map_err(&err)?;
            let targets = match &self.spec.tables {
                TableSelection::Tables(t) => format!(
                    "TABLE {}",
                    t.iter()
                        .map(|(s, n)| quote_qualified(s, n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                TableSelection::Schemas(s) => format!(
                    "TABLES IN SCHEMA {}",
                    s.iter()
                        .map(|s| pgrepl_core::sql::quote_ident(s))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let exists = client
                .query_opt(
                    "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
                    &[&publication],
                )
                .await
                .map_err(&err)?
                .is_some();
            let quoted = pgrepl_core::sql::quote_ident(&publication);
            if exists {
                client
                    .batch_execute(&format!("ALTER PUBLICATION {quoted} SET {targets}"))
                    .await
                    .map_err(&err)?;
            } else {
                client
                    .batch_execute(&format!("CREATE PUBLICATION {quoted} FOR {targets}"))
                    .await
                    .map_err(&err)?;
                report.actions.push(format!(
                    "node {}: created publication {publication}",
                    node.name
                ));
            }
            for link in links.iter().filter(|l| l.source == node.name) {
                let created = create_unless_exists(
                    &mut client,
                    "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                    "SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')",
                    &link.slot,
                )
                .await
                .map_err(&err)?;
                if created {
                    report.actions.push(format!(
                        "node {}: created slot {} for link {link}",
                        node.name, link.slot
                    ));
                }
            }
            for link in links.iter().filter(|l| l.target == node.name) {
                let created = create_unless_exists(
                    &mut client,
                    "SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = $1",
                    "SELECT pg_catalog.pg_replication_origin_create($1)",
                    &link.origin,
                )
                .await
                .map_err(&err)?;
                if created {
                    report.actions.push(format!(
                        "node {}: created replication origin {} for link {link}",
                        node.name, link.origin
                    ));
                }
            }
        }
        if partition_sequences {
            report.actions.extend(self.partition_sequences().await?);
        }
        Ok(report)
    }

    /// Gives every sequence owned by a replicated table a node-disjoint stride.
    async fn partition_sequences(&self) -> Result<Vec<String>, MeshError> {
        let n = i64::try_from(self.spec.nodes.len()).unwrap_or(i64::MAX);
        let mut clients = Vec::new();
        for node in &self.spec.nodes {
            clients.push((node, self.connect(node).await?));
        }
        // The sequences, from the first node (the same tables exist everywhere).
        let Some((first, client)) = clients.first_mut() else {
            return Ok(Vec::new());
        };
        let tables = self.tables_on(client, &first.name).await?;
        let mut sequences = Vec::new();
        for (schema, table, identity, _) in &tables {
            if identity == "missing" {
                continue;
            }
            for r in client
                .query(
                    "SELECT sn.nspname, s.relname FROM pg_catalog.pg_depend d \
                     JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
                     JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace \
                     JOIN pg_catalog.pg_class t ON t.oid = d.refobjid \
                     JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
                     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                       AND d.deptype IN ('a', 'i') AND tn.nspname = $1 AND t.relname = $2",
                    &[schema, table],
                )
                .await
                .map_err(conn_err(&first.name))?
            {
                let seq: (String, String) = (
                    r.get(0).map_err(conn_err(&first.name))?,
                    r.get(1).map_err(conn_err(&first.name))?,
                );
                if !sequences.contains(&seq) {
                    sequences.push(seq);
                }
            }
        }
        let mut actions = Vec::new();
        for (schema, name) in &sequences {
            let quoted = quote_qualified(schema, name);
            // The highest value any node has handed out (a sequence never used has handed out
            // nothing: its `last_value` is NULL, and its first value would be `start_value`).
            let mut high = 0i64;
            let mut settled = true;
            for (k, (node, client)) in clients.iter_mut().enumerate() {
                let row = client
                    .query_one(
                        "SELECT coalesce(last_value, start_value - 1), increment_by, start_value \
                         FROM pg_catalog.pg_sequences WHERE schemaname = $1 AND sequencename = $2",
                        &[schema, name],
                    )
                    .await
                    .map_err(conn_err(&node.name))?;
                let last: i64 = row.get(0).map_err(conn_err(&node.name))?;
                let inc: i64 = row.get(1).map_err(conn_err(&node.name))?;
                let start: i64 = row.get(2).map_err(conn_err(&node.name))?;
                high = high.max(last);
                let k = i64::try_from(k).unwrap_or(0) + 1;
                if inc != n || start.rem_euclid(n) != k.rem_euclid(n) {
                    settled = false;
                }
            }
            if settled {
                continue;
            }
            for (k, (node, client)) in clients.iter_mut().enumerate() {
                let k = i64::try_from(k).unwrap_or(0) + 1;
                // The smallest value above `high` that is k modulo n.
                let base = high.saturating_add(1);
                let restart = base.saturating_add((k - base).rem_euclid(n));
                client
                    .batch_execute(&format!(
                        "ALTER SEQUENCE {quoted} INCREMENT BY {n} START WITH {restart} \
                         MINVALUE 1 RESTART WITH {restart}"
                    ))
                    .await
                    .map_err(conn_err(&node.name))?;
                actions.push(format!(
                    "node {}: sequence {schema}.{name} now yields {restart}, {}, … (node {k} of {n})",
                    node.name,
                    restart.saturating_add(n)
                ));
            }
        }
        Ok(actions)
    }

    /// Drops every slot, origin and publication of the cluster on every node (waiting for, or
    /// ending, sessions that still use them). Schema `pgrepl` and its history stay. Stops at the
    /// first node that fails; [`Mesh::teardown_node`] does one node at a time.
    pub async fn teardown(&self) -> Result<SetupReport, MeshError> {
        let mut report = SetupReport::default();
        for node in &self.spec.nodes {
            report
                .actions
                .extend(self.teardown_node(&node.name).await?.actions);
        }
        Ok(report)
    }

    /// Drops the cluster's slots, origins and publication on the node `name`, as
    /// [`Mesh::teardown`] does on every node — so that a caller can go on with the other nodes
    /// when one is unreachable.
    pub async fn teardown_node(&self, name: &str) -> Result<SetupReport, MeshError> {
        let node = self
            .node(name)
            .ok_or_else(|| MeshError::Config(format!("no node named \"{name}\"")))?;
        let mut report = SetupReport::default();
        let publication = publication_name(&self.spec.cluster);
        // `pgrepl_<cluster>_to_…` and `pgrepl_<cluster>_from_…`: not `pgrepl_<cluster>_…`,
        // which would also match the objects of a cluster named `<cluster>_<more>`.
        let slots = format!("pgrepl\\_{}\\_to\\_%", self.spec.cluster);
        let origins = format!("pgrepl\\_{}\\_from\\_%", self.spec.cluster);
        let err = conn_err(&node.name);
        let mut client = self.connect(node).await?;
        // Slots: end the walsender of an active one first.
        for row in client
            .query(
                "SELECT slot_name, active_pid FROM pg_catalog.pg_replication_slots \
                 WHERE slot_name LIKE $1",
                &[&slots],
            )
            .await
            .map_err(&err)?
        {
            let slot: String = row.get(0).map_err(&err)?;
            let pid: Option<i32> = row.get(1).map_err(&err)?;
            if let Some(pid) = pid {
                client
                    .query(
                        "SELECT pg_catalog.pg_terminate_backend($1::int, 5000)",
                        &[&pid],
                    )
                    .await
                    .map_err(&err)?;
            }
            drop_with_retry(
                &mut client,
                "SELECT pg_catalog.pg_drop_replication_slot($1)",
                &slot,
            )
            .await
            .map_err(&err)?;
            report
                .actions
                .push(format!("node {}: dropped slot {slot}", node.name));
        }
        // Origins: end the apply session that has one set up (it names itself after it).
        for row in client
            .query(
                "SELECT roname FROM pg_catalog.pg_replication_origin WHERE roname LIKE $1",
                &[&origins],
            )
            .await
            .map_err(&err)?
        {
            let origin: String = row.get(0).map_err(&err)?;
            client
                .query(
                    "SELECT pg_catalog.pg_terminate_backend(pid, 5000) \
                     FROM pg_catalog.pg_stat_activity WHERE application_name = $1",
                    &[&apply_session_name(&origin)],
                )
                .await
                .map_err(&err)?;
            drop_with_retry(
                &mut client,
                "SELECT pg_catalog.pg_replication_origin_drop($1)",
                &origin,
            )
            .await
            .map_err(&err)?;
            report.actions.push(format!(
                "node {}: dropped replication origin {origin}",
                node.name
            ));
        }
        if client
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
                &[&publication],
            )
            .await
            .map_err(&err)?
            .is_some()
        {
            client
                .batch_execute(&format!(
                    "DROP PUBLICATION {}",
                    pgrepl_core::sql::quote_ident(&publication)
                ))
                .await
                .map_err(&err)?;
            report.actions.push(format!(
                "node {}: dropped publication {publication}",
                node.name
            ));
        }
        Ok(report)
    }
}

/// Runs `create` for `name` unless `exists` (a query on `name`) finds a row; whether it
/// created. For the objects `setup` makes idempotently: slots and origins.
async fn create_unless_exists(
    client: &mut Client,
    exists: &str,
    create: &str,
    name: &str,
) -> Result<bool, ConnError> {
    if client.query_opt(exists, &[&name]).await?.is_some() {
        return Ok(false);
    }
    client.query(create, &[&name]).await?;
    Ok(true)
}

/// Drops a slot or origin, retrying while PostgreSQL says it is still in use (`55006`) by a
/// session that is going away.
async fn drop_with_retry(client: &mut Client, sql: &str, name: &str) -> Result<(), ConnError> {
    let mut attempt = 0;
    loop {
        match client.query(sql, &[&name]).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some("55006") && attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The `application_name` of the apply session of the link whose origin is `origin`, so that
/// teardown can find and end it.
pub fn apply_session_name(origin: &str) -> String {
    format!("pgrepl apply {origin}")
}

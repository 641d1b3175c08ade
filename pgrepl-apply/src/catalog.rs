//! What the target knows about a replicated table: its columns, their types, and its unique
//! indexes — read from `pg_catalog` over the link's metadata session.
//!
//! The applier needs the target's own view because columns map by *name*, not position (the
//! target may have extra columns, in another order), because parameters are cast to the
//! target's column types, and because conflict detection probes every unique index a remote
//! row could collide with.

use std::sync::Arc;

use pgrepl_core::connection::{Client, Error as ConnError};
use pgrepl_core::sql::{quote_ident, quote_qualified};

/// One column of a target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    /// The name.
    pub name: String,
    /// The name, quoted for SQL.
    pub quoted: String,
    /// The type's OID.
    pub type_oid: u32,
    /// The type as SQL (`format_type`, e.g. `character varying(20)`), for casts.
    pub type_sql: String,
    /// A generated column, which cannot be written.
    pub generated: bool,
}

/// A unique index that can make a remote row collide with a local one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueIndex {
    /// The index's name.
    pub name: String,
    /// Its key columns, as positions in [`TargetTable::columns`].
    pub columns: Vec<usize>,
    /// The primary key.
    pub primary: bool,
    /// NULLS NOT DISTINCT: NULLs collide too.
    pub nulls_not_distinct: bool,
}

/// A table on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    /// Its OID.
    pub oid: u32,
    /// The schema.
    pub schema: String,
    /// The name.
    pub name: String,
    /// `"schema"."name"`.
    pub quoted: String,
    /// Its columns, in attribute order.
    pub columns: Vec<TargetColumn>,
    /// Its unique, valid, immediate, non-partial indexes on plain columns (the primary key
    /// first).
    pub unique_indexes: Vec<UniqueIndex>,
    /// Whether it has deferrable constraints (checked at commit unless made immediate).
    pub deferrable: bool,
}

impl TargetTable {
    /// The position of the column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// Reads the table `schema.name` from the target's catalog; `None` if there is no such table.
pub async fn load_table(
    client: &mut Client,
    schema: &str,
    name: &str,
) -> Result<Option<Arc<TargetTable>>, ConnError> {
    let Some(row) = client
        .query_opt(
            "SELECT c.oid FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&schema, &name],
        )
        .await?
    else {
        return Ok(None);
    };
    let oid: u32 = row.get(0)?;
    let oid_text = oid.to_string();
    let mut columns = Vec::new();
    let mut attnums = Vec::new();
    for row in client
        .query(
            "SELECT a.attnum, a.attname, a.atttypid, \
                    pg_catalog.format_type(a.atttypid, a.atttypmod), a.attgenerated <> '' \
             FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid_text],
        )
        .await?
    {
        let attnum: i16 = row.get(0)?;
        let name: String = row.get(1)?;
        attnums.push(attnum);
        columns.push(TargetColumn {
            quoted: quote_ident(&name),
            name,
            type_oid: row.get(2)?,
            type_sql: row.get(3)?,
            generated: row.get(4)?,
        });
    }
    let mut unique_indexes = Vec::new();
    for row in client
        .query(
            "SELECT ci.relname, i.indisprimary, i.indnullsnotdistinct, \
                    (SELECT pg_catalog.string_agg(k::text, ' ' ORDER BY o) \
                       FROM pg_catalog.unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS u(k, o)) \
             FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid \
             WHERE i.indrelid = $1::oid AND i.indisunique AND i.indisvalid AND i.indimmediate \
               AND i.indpred IS NULL AND i.indexprs IS NULL \
             ORDER BY i.indisprimary DESC, i.indisreplident DESC, ci.relname",
            &[&oid_text],
        )
        .await?
    {
        let keys: String = row.get(3)?;
        let positions: Option<Vec<usize>> = keys
            .split_whitespace()
            .map(|k| {
                let attnum: i16 = k.parse().ok()?;
                attnums.iter().position(|a| *a == attnum)
            })
            .collect();
        let Some(positions) = positions.filter(|p| !p.is_empty()) else {
            continue;
        };
        unique_indexes.push(UniqueIndex {
            name: row.get(0)?,
            columns: positions,
            primary: row.get(1)?,
            nulls_not_distinct: row.get(2)?,
        });
    }
    let deferrable: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint \
                            WHERE conrelid = $1::oid AND condeferrable) \
                 OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger \
                            WHERE tgrelid = $1::oid AND tgdeferrable)",
            &[&oid_text],
        )
        .await?
        .get(0)?;
    Ok(Some(Arc::new(TargetTable {
        oid,
        deferrable,
        schema: schema.to_owned(),
        name: name.to_owned(),
        quoted: quote_qualified(schema, name),
        columns,
        unique_indexes,
    })))
}

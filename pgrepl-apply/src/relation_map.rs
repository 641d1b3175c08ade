//! How a remote relation (a pgoutput Relation message) lands on a target table.
//!
//! Columns map by **name**: the target may order its columns differently and may have extra
//! columns (they take their defaults). A remote column the target lacks is a definite error
//! naming it; a remote column that is *generated* on the target is not written (the target
//! computes it). Rows are found for UPDATE and DELETE by the source's replica identity:
//!
//! | source identity | how the target row is found |
//! | --- | --- |
//! | DEFAULT (primary key) / USING INDEX | `=` on the key columns, from the old key (`K`) or the new tuple |
//! | FULL, target has a unique key whose columns are all replicated | `=` on that key, from the old tuple (`O`) |
//! | FULL, otherwise | every column of the old tuple compared as text, one row |
//! | NOTHING | updates and deletes cannot be applied (the source refuses them too) |

use std::sync::Arc;

use pgrepl_core::pgoutput::{Relation, ReplicaIdentity};

use crate::catalog::TargetTable;
use crate::error::ApplyError;

/// How target rows are found for UPDATE and DELETE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// `=` on these remote columns (the replica identity key).
    Key(Vec<usize>),
    /// REPLICA IDENTITY FULL, matched on these remote columns (a unique key of the target),
    /// taken from the old tuple; falls back to [`Lookup::FullRow`] when one is NULL or unknown.
    FullByKey(Vec<usize>),
    /// REPLICA IDENTITY FULL, every old-tuple column compared.
    FullRow,
    /// No identity.
    None,
}

/// A remote relation mapped onto a target table.
#[derive(Debug, Clone)]
pub struct RelationMap {
    /// A number unique to this mapping within the link, naming its prepared statements.
    pub id: u64,
    /// The remote description.
    pub remote: Arc<Relation>,
    /// The target table.
    pub target: Arc<TargetTable>,
    /// For each remote column, the position of the target column of the same name.
    pub columns: Vec<usize>,
    /// For each remote column, whether it is written (`false` when the target generates it).
    pub writable: Vec<bool>,
    /// The remote columns that are written, in remote order.
    writable_cols: Vec<usize>,
    /// How rows are found.
    pub lookup: Lookup,
}

impl RelationMap {
    /// Maps `remote` onto `target`.
    pub fn new(
        id: u64,
        node: &str,
        remote: Arc<Relation>,
        target: Arc<TargetTable>,
    ) -> Result<Self, ApplyError> {
        let mut columns = Vec::with_capacity(remote.columns.len());
        let mut writable = Vec::with_capacity(remote.columns.len());
        for col in &remote.columns {
            let Some(pos) = target.column(&col.name) else {
                return Err(ApplyError::MissingColumn {
                    node: node.to_owned(),
                    table: target.quoted.clone(),
                    column: col.name.clone(),
                });
            };
            let generated = target.columns.get(pos).is_some_and(|c| c.generated);
            columns.push(pos);
            writable.push(!generated);
        }
        let key: Vec<usize> = remote
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.flags & 1 == 1)
            .map(|(i, _)| i)
            .collect();
        let lookup = match remote.replica_identity {
            ReplicaIdentity::Nothing => Lookup::None,
            ReplicaIdentity::Default | ReplicaIdentity::Index if key.is_empty() => Lookup::None,
            ReplicaIdentity::Default | ReplicaIdentity::Index => Lookup::Key(key),
            ReplicaIdentity::Full => {
                // The first unique index of the target (primary key first) whose columns all
                // come from the source.
                let by_key = target.unique_indexes.iter().find_map(|idx| {
                    idx.columns
                        .iter()
                        .map(|t| columns.iter().position(|m| m == t))
                        .collect::<Option<Vec<usize>>>()
                });
                match by_key {
                    Some(remote_cols) => Lookup::FullByKey(remote_cols),
                    None => Lookup::FullRow,
                }
            }
        };
        Ok(RelationMap {
            id,
            remote,
            target,
            writable_cols: writable
                .iter()
                .enumerate()
                .filter(|(_, w)| **w)
                .map(|(i, _)| i)
                .collect(),
            columns,
            writable,
            lookup,
        })
    }

    /// The target column of the same name as remote column `i`.
    pub fn target_column(&self, i: usize) -> Option<&crate::catalog::TargetColumn> {
        self.columns
            .get(i)
            .and_then(|t| self.target.columns.get(*t))
    }

    /// The remote columns that are written to the target, in remote order.
    pub fn writable_columns(&self) -> &[usize] {
        &self.writable_cols
    }

    /// Whether remote column `i` is written to the target.
    pub fn is_writable(&self, i: usize) -> bool {
        self.writable.get(i).copied().unwrap_or(false)
    }

    /// The remote column that feeds target column `t`, if any.
    pub fn remote_column_for(&self, t: usize) -> Option<usize> {
        self.columns.iter().position(|c| *c == t)
    }

    /// `schema.name` of the source relation, for messages.
    pub fn remote_name(&self) -> String {
        let ns = if self.remote.namespace.is_empty() {
            "pg_catalog"
        } else {
            &self.remote.namespace
        };
        format!("{ns}.{}", self.remote.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{TargetColumn, UniqueIndex};
    use pgrepl_core::pgoutput::RelationColumn;

    fn remote(identity: ReplicaIdentity, cols: &[(&str, bool)]) -> Arc<Relation> {
        Arc::new(Relation {
            xid: None,
            oid: 1,
            namespace: "public".into(),
            name: "t".into(),
            replica_identity: identity,
            columns: cols
                .iter()
                .map(|(n, key)| RelationColumn {
                    flags: u8::from(*key),
                    name: (*n).into(),
                    type_oid: 23,
                    type_modifier: -1,
                })
                .collect(),
        })
    }

    fn target(cols: &[(&str, bool)], unique: &[&[usize]]) -> Arc<TargetTable> {
        Arc::new(TargetTable {
            oid: 9,
            schema: "public".into(),
            name: "t".into(),
            quoted: "\"public\".\"t\"".into(),
            columns: cols
                .iter()
                .map(|(n, generated)| TargetColumn {
                    name: (*n).into(),
                    quoted: format!("\"{n}\""),
                    type_oid: 23,
                    type_sql: "integer".into(),
                    generated: *generated,
                })
                .collect(),
            deferrable: false,
            unique_indexes: unique
                .iter()
                .map(|c| UniqueIndex {
                    name: "u".into(),
                    columns: c.to_vec(),
                    primary: false,
                    nulls_not_distinct: false,
                })
                .collect(),
        })
    }

    #[test]
    fn columns_map_by_name() {
        let m = RelationMap::new(
            1,
            "n",
            remote(
                ReplicaIdentity::Default,
                &[("id", true), ("v", false), ("g", false)],
            ),
            target(
                &[("extra", false), ("v", false), ("g", true), ("id", false)],
                &[],
            ),
        )
        .unwrap();
        assert_eq!(m.columns, vec![3, 1, 2]);
        assert_eq!(m.writable, vec![true, true, false]);
        assert_eq!(m.lookup, Lookup::Key(vec![0]));
    }

    #[test]
    fn missing_column_is_named() {
        let e = RelationMap::new(
            1,
            "node2",
            remote(ReplicaIdentity::Default, &[("id", true), ("gone", false)]),
            target(&[("id", false)], &[]),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("gone") && text.contains("node2"), "{text}");
    }

    #[test]
    fn full_identity_uses_a_target_key_when_there_is_one() {
        let m = RelationMap::new(
            1,
            "n",
            remote(ReplicaIdentity::Full, &[("a", true), ("b", true)]),
            target(&[("b", false), ("a", false)], &[&[0]]),
        )
        .unwrap();
        assert_eq!(m.lookup, Lookup::FullByKey(vec![1]));
        let m = RelationMap::new(
            1,
            "n",
            remote(ReplicaIdentity::Full, &[("a", true)]),
            target(&[("a", false)], &[]),
        )
        .unwrap();
        assert_eq!(m.lookup, Lookup::FullRow);
        let m = RelationMap::new(
            1,
            "n",
            remote(ReplicaIdentity::Default, &[("a", false)]),
            target(&[("a", false)], &[]),
        )
        .unwrap();
        assert_eq!(m.lookup, Lookup::None);
    }
}

//! The relations a replication session has described so far.
//!
//! pgoutput sends a Relation message before the first change of a relation in a session, and
//! again whenever the relation's definition changed (a column added, dropped or retyped, a new
//! replica identity). Change messages carry only the relation's OID, so a consumer must keep the
//! latest description of each OID to read a tuple: its columns, their order, which of them form
//! the key. This cache holds exactly that, and a *generation* per OID that increases with every
//! new description, so that anything derived from a description (a column mapping, prepared
//! statements) can tell it is stale.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pgoutput::Relation;

/// A described relation and the generation of its description.
#[derive(Debug, Clone)]
pub struct CachedRelation {
    /// The description.
    pub relation: Arc<Relation>,
    /// Increases each time the OID is described again.
    pub generation: u64,
}

/// Relation descriptions by OID.
#[derive(Debug, Default, Clone)]
pub struct RelationCache {
    by_oid: HashMap<u32, CachedRelation>,
    next_generation: u64,
}

impl RelationCache {
    /// An empty cache (a new session).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a Relation message; returns the new entry.
    pub fn insert(&mut self, relation: Relation) -> CachedRelation {
        self.next_generation = self.next_generation.wrapping_add(1);
        let entry = CachedRelation {
            relation: Arc::new(relation),
            generation: self.next_generation,
        };
        self.by_oid.insert(entry.relation.oid, entry.clone());
        entry
    }

    /// The latest description of `oid`.
    pub fn get(&self, oid: u32) -> Option<&CachedRelation> {
        self.by_oid.get(&oid)
    }

    /// Forgets everything (after a reconnect the server describes every relation again).
    pub fn clear(&mut self) {
        self.by_oid.clear();
    }

    /// How many relations are described.
    pub fn len(&self) -> usize {
        self.by_oid.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_oid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::ReplicaIdentity;

    fn rel(oid: u32, name: &str) -> Relation {
        Relation {
            xid: None,
            oid,
            namespace: "public".into(),
            name: name.into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![],
        }
    }

    #[test]
    fn newer_descriptions_replace_older_ones_with_a_new_generation() {
        let mut cache = RelationCache::new();
        let first = cache.insert(rel(1, "a")).generation;
        cache.insert(rel(2, "b"));
        let second = cache.insert(rel(1, "a2")).generation;
        assert!(second > first);
        assert_eq!(cache.get(1).unwrap().relation.name, "a2");
        assert_eq!(cache.len(), 2);
        cache.clear();
        assert!(cache.get(2).is_none());
    }
}

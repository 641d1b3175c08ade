//! The names pgrepl gives to what it creates on each node, derived from the cluster name and
//! node names so every process computes the same ones.
//!
//! For a link from node `a` to node `b` in cluster `c`:
//!
//! | object | where | name |
//! | --- | --- | --- |
//! | publication | every node | `pgrepl_c` |
//! | logical replication slot | `a` (the source) | `pgrepl_c_to_b` |
//! | replication origin | `b` (the target) | `pgrepl_c_from_a` |
//!
//! Cluster and node names are `[a-z0-9_]`, and every derived name must fit PostgreSQL's 63-byte
//! limit for slot names; anything else is refused with a message that says so. The origin name
//! also tells, for any row on a node, which node its last writer was (see
//! [`node_of_origin`]): that is how conflicts name both sides.

use std::fmt;

/// A name that breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} \"{name}\": {rule}")]
pub struct NameError {
    /// What the name is for.
    pub what: &'static str,
    /// The name.
    pub name: String,
    /// The rule it breaks.
    pub rule: String,
}

/// Checks a cluster or node name: `[a-z0-9_]`, 1 to 63 bytes.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    let rule = |rule: &str| NameError {
        what,
        name: name.to_owned(),
        rule: rule.to_owned(),
    };
    if name.is_empty() {
        return Err(rule("it is empty"));
    }
    if name.len() > 63 {
        return Err(rule("it is longer than 63 bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(rule(
            "use only lower-case letters a-z, digits and underscores",
        ));
    }
    Ok(())
}

/// The names of one link's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkNames {
    /// The cluster.
    pub cluster: String,
    /// The source node.
    pub source: String,
    /// The target node.
    pub target: String,
    /// The publication on the source.
    pub publication: String,
    /// The slot on the source.
    pub slot: String,
    /// The replication origin on the target.
    pub origin: String,
}

impl LinkNames {
    /// Derives and checks the names of the link `source → target`.
    pub fn new(cluster: &str, source: &str, target: &str) -> Result<Self, NameError> {
        validate_name("cluster name", cluster)?;
        validate_name("node name", source)?;
        validate_name("node name", target)?;
        let slot = format!("pgrepl_{cluster}_to_{target}");
        let origin = format!("pgrepl_{cluster}_from_{source}");
        for (what, name) in [("slot name", &slot), ("origin name", &origin)] {
            if name.len() > 63 {
                return Err(NameError {
                    what,
                    name: name.clone(),
                    rule: "longer than 63 bytes; use shorter cluster and node names".into(),
                });
            }
        }
        Ok(LinkNames {
            cluster: cluster.to_owned(),
            source: source.to_owned(),
            target: target.to_owned(),
            publication: publication_name(cluster),
            slot,
            origin,
        })
    }
}

impl fmt::Display for LinkNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}→{}", self.source, self.target)
    }
}

/// The publication of a cluster.
pub fn publication_name(cluster: &str) -> String {
    format!("pgrepl_{cluster}")
}

/// The node a replication origin of `cluster` stands for, if it is one of pgrepl's.
pub fn node_of_origin<'a>(cluster: &str, origin_name: &'a str) -> Option<&'a str> {
    origin_name
        .strip_prefix("pgrepl_")?
        .strip_prefix(cluster)?
        .strip_prefix("_from_")
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names() {
        let n = LinkNames::new("practice", "node1", "node2").unwrap();
        assert_eq!(n.slot, "pgrepl_practice_to_node2");
        assert_eq!(n.origin, "pgrepl_practice_from_node1");
        assert_eq!(n.publication, "pgrepl_practice");
        assert_eq!(node_of_origin("practice", &n.origin), Some("node1"));
        assert_eq!(node_of_origin("other", &n.origin), None);
        assert_eq!(node_of_origin("practice", "pg_16384"), None);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "Node", "a-b", "a b", "ü"] {
            assert!(LinkNames::new("c", bad, "x").is_err(), "{bad}");
        }
        let long = "n".repeat(50);
        let e = LinkNames::new("cluster", &long, "x").unwrap_err();
        assert!(e.to_string().contains("63"), "{e}");
    }
}

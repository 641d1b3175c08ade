//! `bidir-sync setup` and `bidir-sync teardown`: what the nodes need for replication, created
//! and removed (both idempotent). The work is [`pgrepl_apply::Mesh`]'s; this module reports it.

use pgrepl_apply::MeshError;

use crate::config::Config;
use crate::failure::Failure;

/// Checks every node, then creates what is missing; prints what it did.
pub(crate) async fn setup(config: &Config, partition_sequences: bool) -> Result<u8, Failure> {
    let mesh = &config.mesh;
    let spec = mesh.spec();
    say!(
        "Setting up cluster {} on {} nodes ({}): {} links",
        spec.cluster,
        spec.nodes.len(),
        spec.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        mesh.links().len()
    );
    match mesh.setup(partition_sequences).await {
        Ok(report) => {
            if report.actions.is_empty() {
                say!("Everything was already in place; nothing changed.");
            } else {
                for action in &report.actions {
                    say!("  {action}");
                }
            }
            for warning in config.non_converging_resolvers() {
                say!(
                    "Note: {warning} does not make nodes converge under concurrent writes to \
                     the same row (each node keeps the other's, or its own, version); \
                     last_update_wins and first_update_wins do."
                );
            }
            say!(
                "Ready. Start replication with: bidir-sync run --config <this file>\n\
                 (Setup copies no data: the nodes' tables must hold the same rows, or be empty, \
                 from now on.)"
            );
            Ok(0)
        }
        Err(MeshError::Blocked(problems)) => {
            let mut message = format!(
                "{} problem(s) block replication; nothing was changed:",
                problems.len()
            );
            for p in &problems {
                message.push_str(&format!(
                    "\n  - node {}: {}\n      fix: {}",
                    p.node, p.what, p.fix
                ));
            }
            message.push_str("\nFix them, then run setup again.");
            Err(Failure::new(message))
        }
        Err(e) => Err(Failure::mesh(&e)),
    }
}

/// Drops slots, origins and publications on every node it can reach.
pub(crate) async fn teardown(config: &Config) -> Result<u8, Failure> {
    let mesh = &config.mesh;
    let spec = mesh.spec();
    say!("Tearing down cluster {}", spec.cluster);
    let mut unreachable = Vec::new();
    let mut changed = false;
    for node in &spec.nodes {
        match mesh.teardown_node(&node.name).await {
            Ok(report) => {
                for action in &report.actions {
                    say!("  {action}");
                }
                changed |= !report.actions.is_empty();
            }
            Err(e) => unreachable.push(Failure::mesh(&e).message),
        }
    }
    if !changed && unreachable.is_empty() {
        say!("Nothing to remove: no slot, origin or publication of this cluster is left.");
    }
    let spool = spec.spool_dir.join(&spec.cluster);
    if spool.exists() {
        match std::fs::remove_dir_all(&spool) {
            Ok(()) => say!("  removed the spool directory {}", spool.display()),
            Err(e) => say!(
                "  could not remove the spool directory {}: {e}",
                spool.display()
            ),
        }
    }
    if unreachable.is_empty() {
        say!(
            "Done. Schema pgrepl (with the conflict history) stays on every node; \
             DROP SCHEMA pgrepl CASCADE removes it."
        );
        Ok(0)
    } else {
        Err(Failure::new(format!(
            "{}\nThe slots of an unreachable node still hold WAL on it: run teardown again once \
             it is reachable.",
            unreachable.join("\n")
        )))
    }
}

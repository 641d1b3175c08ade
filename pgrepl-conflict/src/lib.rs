//! pgrepl-conflict: lands with its issue.

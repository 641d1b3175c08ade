//! pgrepl-apply: lands with its issue.

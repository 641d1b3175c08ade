//! pgrepl-testkit: lands with its issue.

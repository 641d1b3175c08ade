//! Helpers shared by the connection tests (`auth`, `tls`, `slots`, `stream`, `conn_errors`):
//! configurations that never read the process environment, a small SQL shortcut, and a
//! collector that turns a replication stream into whole transactions described as text.

use std::collections::HashMap;

use pgrepl_core::connection::{Client, ConnectConfig, Error};

/// Parses a DSN with an empty environment, so no test depends on (or races over) the
/// process's `PG*` variables, `HOME` or `~/.pgpass`.
pub(crate) fn config(dsn: &str) -> ConnectConfig {
    ConnectConfig::parse_with_env(dsn, &|_| None).unwrap()
}

/// Parses a DSN with exactly these environment variables.
pub(crate) fn config_with_env(dsn: &str, vars: &[(&str, &str)]) -> ConnectConfig {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ConnectConfig::parse_with_env(dsn, &move |k| vars.get(k).cloned()).unwrap()
}

/// The first column of the first row of `query`, as text (`None` for NULL or no row).
pub(crate) async fn scalar(client: &mut Client, query: &str) -> Option<String> {
    let rows = client.simple_query(query).await.unwrap();
    rows.first().and_then(|r| r.get_str(0).map(str::to_owned))
}

/// Asserts that neither the `Display` nor the `Debug` form of `err` contains `secret`.
pub(crate) fn assert_hides(err: &Error, secret: &str) {
    let shown = format!("{err} / {err:?}");
    assert!(
        !shown.contains(secret),
        "the error shows the password: {shown}"
    );
}

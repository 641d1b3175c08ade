//! Quoting for the SQL that pgrepl writes.
//!
//! pgrepl never splices a value into SQL text: values travel as Bind parameters. Names do have
//! to appear in the text (tables, columns, schemas), and every one of them goes through
//! [`quote_ident`], which always double-quotes, so a name is taken literally whatever it
//! contains (capitals, spaces, quotes, keywords). [`quote_literal`] exists for the few places
//! where the protocol offers no parameters: replication commands such as `START_REPLICATION`,
//! whose option values are string literals.

/// Quotes a name as a SQL identifier: `"…"`, with every `"` doubled.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes a schema-qualified name: `"schema"."name"`.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Quotes a string as a SQL string literal: `'…'`, with every `'` doubled. Only for replication
/// commands, which take no parameters; never for values from a replication stream.
pub fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("we\"ird name"), "\"we\"\"ird name\"");
        assert_eq!(quote_qualified("public", "T"), "\"public\".\"T\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}

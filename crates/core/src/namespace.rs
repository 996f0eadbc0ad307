//! Which names may be a namespace. A namespace is both a PostgreSQL
//! schema and a Redis key prefix, used unquoted in SQL and in key names,
//! so the rule is strict: `[a-z][a-z0-9_]*`, at most 48 characters, and
//! never one of PostgreSQL's own schemas (`public`, `information_schema`,
//! `pg_*`) — `--fresh` on `public` would drop every user table in it.

/// Longest namespace (PostgreSQL identifiers stop at 63 bytes; the rest
/// leaves room for derived names such as `dvmtop_<ns>` channels).
pub(crate) const MAX_LEN: usize = 48;

/// Schemas that belong to PostgreSQL or to everybody, never to dvmtop.
const RESERVED: [&str; 2] = ["public", "information_schema"];

/// `Ok` when `ns` may be a namespace; otherwise why not, as one line that
/// says what to use instead.
pub fn check(ns: &str) -> Result<(), String> {
    let shape = ns.len() <= MAX_LEN
        && ns.starts_with(|c: char| c.is_ascii_lowercase())
        && ns
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !shape {
        return Err(format!(
            "invalid namespace {ns:?}: use lowercase letters, digits and _, starting with a letter (max {MAX_LEN})"
        ));
    }
    if RESERVED.contains(&ns) || ns.starts_with("pg_") {
        return Err(format!(
            "namespace {ns:?} is a PostgreSQL schema dvmtop must not use (public, information_schema and pg_* are refused): choose another --namespace"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_names_starting_with_a_letter() {
        for ok in ["dvmtop", "a", "t_x_1", "live2", &"a".repeat(MAX_LEN)] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_shapes_and_postgres_schemas() {
        for bad in [
            "",
            "_x",
            "1a",
            "Abc",
            "a-b",
            "a:b",
            "a b",
            "é",
            &"a".repeat(MAX_LEN + 1),
            "public",
            "information_schema",
            "pg_catalog",
            "pg_toast",
            "pg_",
        ] {
            let e = check(bad).expect_err(bad);
            assert!(!e.contains('\n') && e.contains("namespace"), "{e}");
        }
        assert!(check("public").unwrap_err().contains("PostgreSQL schema"));
        assert!(check("_x").unwrap_err().contains("starting with a letter"));
    }
}

//! Splitting a SQL file into its statements, so that a migration runs one
//! statement per query.
//!
//! Why not the whole file in one simple query: Citus propagates DDL on a
//! distributed table (an `ALTER TABLE notes ...`) to the shards with the
//! text of the query it came in, and a query of several statements fails
//! there ("cannot insert multiple commands into a prepared statement"). One
//! statement per query behaves the same on plain PostgreSQL and keeps every
//! statement in the migration's one transaction.
//!
//! The splitter knows what can hide a `;`: `--` and (nested) `/* */`
//! comments, `'...'` and `E'...'` strings, `"..."` identifiers and
//! `$tag$...$tag$` bodies. Nothing else of SQL matters to it.

/// The statements of `sql`, each with its byte offset in `sql`, without the
/// terminating `;`. Pieces holding only whitespace and comments are left out.
pub fn split(sql: &str) -> Vec<(usize, &str)> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let (mut start, mut at, mut meaningful) = (0, 0, false);
    while at < bytes.len() {
        let skipped = match bytes[at] {
            b'-' if bytes.get(at + 1) == Some(&b'-') => {
                Some(sql[at..].find('\n').map_or(bytes.len(), |end| at + end))
            }
            b'/' if bytes.get(at + 1) == Some(&b'*') => Some(block_comment_end(bytes, at)),
            _ => None,
        };
        if let Some(end) = skipped {
            at = end;
            continue;
        }
        let end = match bytes[at] {
            b'\'' => {
                let escapes = at > 0
                    && matches!(bytes[at - 1], b'E' | b'e')
                    && (at < 2 || !is_identifier_byte(bytes[at - 2]));
                quoted_end(bytes, at, b'\'', escapes)
            }
            b'"' => quoted_end(bytes, at, b'"', false),
            b'$' => dollar_quote_end(sql, at).unwrap_or(at + 1),
            b';' => {
                if meaningful {
                    statements.push((start, sql[start..at].trim_end()));
                }
                start = at + 1;
                meaningful = false;
                at += 1;
                continue;
            }
            _ => at + 1,
        };
        if !bytes[at].is_ascii_whitespace() {
            if !meaningful {
                start = at;
            }
            meaningful = true;
        }
        at = end;
    }
    if meaningful {
        statements.push((start, sql[start..].trim_end()));
    }
    statements
}

fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

/// Past the `*/` closing the comment opened at `at` (comments nest).
fn block_comment_end(bytes: &[u8], mut at: usize) -> usize {
    let mut depth = 0;
    while at < bytes.len() {
        if bytes[at] == b'/' && bytes.get(at + 1) == Some(&b'*') {
            depth += 1;
            at += 2;
        } else if bytes[at] == b'*' && bytes.get(at + 1) == Some(&b'/') {
            depth -= 1;
            at += 2;
            if depth == 0 {
                return at;
            }
        } else {
            at += 1;
        }
    }
    bytes.len()
}

/// Past the quote closing the one at `at` (a doubled quote is one inside;
/// with `escapes`, so is a backslashed one).
fn quoted_end(bytes: &[u8], at: usize, quote: u8, escapes: bool) -> usize {
    let mut at = at + 1;
    while at < bytes.len() {
        if escapes && bytes[at] == b'\\' {
            at += 2;
        } else if bytes[at] == quote {
            if bytes.get(at + 1) == Some(&quote) {
                at += 2;
            } else {
                return at + 1;
            }
        } else {
            at += 1;
        }
    }
    bytes.len()
}

/// Past the end of the dollar-quoted body opening at `at`, if `$...$` at
/// `at` opens one (`$1`, a parameter, does not).
fn dollar_quote_end(sql: &str, at: usize) -> Option<usize> {
    let bytes = sql.as_bytes();
    if at > 0 && is_identifier_byte(bytes[at - 1]) {
        return None;
    }
    let tag_length = sql[at + 1..].find('$')?;
    let tag = &sql[at + 1..at + 1 + tag_length];
    let valid = tag.bytes().enumerate().all(|(index, byte)| {
        byte == b'_'
            || byte.is_ascii_alphabetic()
            || byte >= 0x80
            || (index > 0 && byte.is_ascii_digit())
    });
    if !valid {
        return None;
    }
    let delimiter = &sql[at..=at + 1 + tag_length];
    let body = at + delimiter.len();
    Some(
        sql[body..]
            .find(delimiter)
            .map_or(sql.len(), |end| body + end + delimiter.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::split;

    fn texts(sql: &str) -> Vec<&str> {
        split(sql).into_iter().map(|(_, text)| text).collect()
    }

    #[test]
    fn statements_split_at_semicolons_outside_quotes_comments_and_bodies() {
        let sql = "-- a comment; not a statement\n\
                   create table t (a text default 'x;y', \"b;c\" int);\n\
                   /* one; /* nested; */ still */ select E'it\\'s;', 'a''b;';\n\
                   create function f() returns int language sql as $body$ select 1; $body$;\n\
                   do $$ begin perform 1; end $$;\n\
                   select $1::int;\n\
                   ;  -- trailing";
        assert_eq!(
            texts(sql),
            [
                "create table t (a text default 'x;y', \"b;c\" int)",
                "select E'it\\'s;', 'a''b;'",
                "create function f() returns int language sql as $body$ select 1; $body$",
                "do $$ begin perform 1; end $$",
                "select $1::int",
            ]
        );
    }

    #[test]
    fn offsets_point_at_each_statement_and_a_last_one_needs_no_semicolon() {
        let sql = "select 1;\n  select 2";
        assert_eq!(split(sql), [(0, "select 1"), (12, "select 2")]);
        assert!(split("-- nothing\n /* at all */ ;").is_empty());
    }

    #[test]
    fn every_migration_splits_into_statements_that_each_end_where_a_semicolon_was() {
        for migration in crate::db::migrate::MIGRATIONS {
            let statements = split(migration.sql);
            assert!(!statements.is_empty(), "{}", migration.label());
            for (offset, text) in statements {
                let after = &migration.sql[offset + text.len()..];
                assert!(
                    after.trim_start().is_empty() || after.trim_start().starts_with(';'),
                    "{}: {text:?} does not end at a semicolon",
                    migration.label()
                );
            }
        }
    }
}

//! The crate's layering: every module has a place in one order, from the
//! domain types at the bottom to the command line at the top, and a module
//! may use only the modules below it. So every `use crate::...` points down,
//! and no two modules can depend on each other. The README's
//! "Architecture" section draws the same order.

use std::{collections::BTreeMap, path::Path};

/// The top-level modules of `src/`, bottom first.
const LAYERS: &[&str] = &[
    // Values every layer shares.
    "domain",
    "error",
    // Infrastructure.
    "config",
    "telemetry",
    "db",
    "paging",
    "limits",
    "tenant",
    "auth",
    // Use cases, shared by the HTTP API and the command line.
    "audit",
    "accounts",
    "onboarding",
    "admin",
    // The application: its shared state, the HTTP API, the server.
    "state",
    "api",
    "serve",
    "startup",
    // Entry points.
    "dev",
    "cli",
];

/// The top-level module a source file belongs to (`src/db/admin.rs` is in
/// `db`); `None` for the crate root.
fn module_of(relative: &str) -> Option<&str> {
    let path = relative.strip_prefix("src/")?;
    let first = path.split('/').next()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (module != "lib" && module != "main").then_some(module)
}

/// The code of `source` without comments (doc links are not dependencies)
/// and without its unit tests.
fn code_of(source: &str) -> String {
    let without_tests = source.split("#[cfg(test)]").next().unwrap_or(source);
    without_tests
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names through `crate::`, in `use` trees
/// (`use crate::{a::b, c}`) and in paths (`crate::a::b`).
fn modules_used(code: &str) -> Vec<String> {
    let leading_name = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut used = Vec::new();
    for (start, _) in code.match_indices("crate::") {
        let rest = &code[start + "crate::".len()..];
        let Some(tree) = rest.strip_prefix('{') else {
            used.push(leading_name(rest));
            continue;
        };
        // Each item at the top level of the braces starts with a module.
        let mut depth = 0;
        let mut item = String::new();
        for c in tree.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    used.push(leading_name(&item));
                    item.clear();
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                item.push(c);
            }
        }
        used.push(leading_name(&item));
    }
    used.retain(|name| !name.is_empty() && name != "self");
    used
}

/// Every import of `sources` (relative path, text) that runs up or
/// sideways, or comes from a module with no layer: `(file, used module)`.
fn violations(sources: &[(String, String)]) -> Vec<(String, String)> {
    let rank: BTreeMap<&str, usize> = LAYERS.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut found = Vec::new();
    for (path, source) in sources {
        let Some(module) = module_of(path) else {
            continue;
        };
        let Some(&own) = rank.get(module) else {
            found.push((path.clone(), format!("{module} (a module with no layer)")));
            continue;
        };
        for used in modules_used(&code_of(source)) {
            match rank.get(used.as_str()) {
                Some(&theirs) if theirs < own || used == module => {}
                _ => found.push((path.clone(), used)),
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn sources_under(root: &Path, dir: &Path, found: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources_under(root, &path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            found.push((relative, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn every_import_of_the_crate_points_down_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    sources_under(root, &root.join("src"), &mut sources);
    assert!(sources.len() > 40, "found the sources");
    assert_eq!(violations(&sources), Vec::<(String, String)>::new());
}

#[test]
fn the_layer_check_catches_imports_that_run_up_and_modules_without_a_layer() {
    let planted = |path: &str, text: &str| vec![(path.to_owned(), text.to_owned())];
    // Down, in a tree, in a path, from the module itself: all fine.
    assert!(
        violations(&planted(
            "src/api/notes.rs",
            "use crate::{db::{Db, TenantTx}, domain::Slug};\nfn f() { crate::error::ApiError::NotFound(\"x\"); }\nuse crate::api::extract;"
        ))
        .is_empty()
    );
    // A doc link up is not a dependency.
    assert!(violations(&planted("src/db/mod.rs", "//! see [`crate::api`]\n")).is_empty());
    assert_eq!(
        violations(&planted(
            "src/tenant/mod.rs",
            "use crate::{\n    domain::TenantId,\n    state::AppState,\n};"
        )),
        [("src/tenant/mod.rs".to_owned(), "state".to_owned())]
    );
    assert_eq!(
        violations(&planted(
            "src/error.rs",
            "fn f() -> crate::limits::Bucket { todo!() }"
        )),
        [("src/error.rs".to_owned(), "limits".to_owned())]
    );
    assert_eq!(
        violations(&planted("src/widgets.rs", "use crate::domain::Slug;")),
        [(
            "src/widgets.rs".to_owned(),
            "widgets (a module with no layer)".to_owned()
        )]
    );
}

/// The longest a source file may be without saying why.
const MAX_LINES: usize = 400;

/// What a longer file must say among its first lines.
const LONG_FILE_REASON: &str = "Over 400 lines:";

/// Source files of `sources` longer than [`MAX_LINES`] that do not say why.
fn long_files_without_a_reason(sources: &[(String, String)]) -> Vec<(String, usize)> {
    sources
        .iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .filter(|(_, text)| {
            !text
                .lines()
                .take_while(|line| line.starts_with("//!"))
                .any(|line| line.contains(LONG_FILE_REASON))
        })
        .map(|(path, text)| (path.clone(), text.lines().count()))
        .collect()
}

#[test]
fn no_source_file_is_over_400_lines_without_a_reason_at_its_top() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    sources_under(root, &root.join("src"), &mut sources);
    assert_eq!(long_files_without_a_reason(&sources), Vec::new());
    let long = "fn f() {}\n".repeat(MAX_LINES + 1);
    let explained = format!("//! A module.\n//! {LONG_FILE_REASON} one table.\n{long}");
    let buried = format!("//! A module.\n{long}// {LONG_FILE_REASON} too late.\n");
    let buried_lines = buried.lines().count();
    assert_eq!(
        long_files_without_a_reason(&[
            ("short.rs".to_owned(), "fn f() {}\n".to_owned()),
            ("explained.rs".to_owned(), explained),
            ("buried.rs".to_owned(), buried),
        ]),
        [("buried.rs".to_owned(), buried_lines)]
    );
}

//! Rules about the source itself, which no runtime test can see: the tenant is
//! only ever set transaction-locally, in one place, and nothing but the tenant
//! transaction itself opens or ends a transaction.

use std::path::Path;

fn rust_sources(dir: &Path, found: &mut Vec<(String, String)>) {
    sources_with_extension(dir, "rs", found);
}

fn sources_with_extension(dir: &Path, extension: &str, found: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources_with_extension(&path, extension, found);
        } else if path.extension().is_some_and(|ext| ext == extension) {
            found.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap().to_lowercase(),
            ));
        }
    }
}

/// Lower-case text with every run of whitespace (and Rust's `\`-newline
/// string continuations) collapsed to one space, so that a statement split
/// over lines reads as one.
fn normalized(text: &str) -> String {
    text.replace("\\\n", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The argument list of every `set_config(...)` call in `text`.
fn set_config_calls(text: &str) -> Vec<&str> {
    let mut calls = Vec::new();
    for (start, _) in text.match_indices("set_config(") {
        let rest = &text[start + "set_config(".len()..];
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map_or(rest.len(), |(index, _)| index);
        calls.push(&rest[..end]);
    }
    calls
}

#[test]
fn the_tenant_is_set_only_transaction_locally_and_only_by_the_tenant_transaction() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    rust_sources(&root.join("src"), &mut sources);
    sources_with_extension(&root.join("sql"), "sql", &mut sources);
    assert!(sources.len() > 10, "found the sources");
    let mut setters = Vec::new();
    for (path, text) in &sources {
        let text = normalized(text);
        for forbidden in [
            "set app.",
            "set session app.",
            "set \"app.",
            "set session \"app.",
            "set local \"app.",
        ] {
            assert!(
                !text.contains(forbidden),
                "{path} contains {forbidden:?}: the tenant must be set only transaction-locally \
                 (set_config(.., true) or set local app.tenant_id)"
            );
        }
        if text.contains("set local app.tenant_id") {
            setters.push(relative(root, path));
        }
        for call in set_config_calls(&text) {
            let local = call.rsplit(',').next().map(str::trim);
            assert_eq!(
                local,
                Some("true"),
                "{path}: set_config({call}) is not transaction-local"
            );
            if call.contains("app.tenant_id") {
                setters.push(relative(root, path));
            }
        }
        // The tenant transaction, and the actor that chooses its BEGIN.
        if !["src/db/transaction.rs", "src/db/actor.rs"].contains(&relative(root, path).as_str()) {
            for forbidden in [
                "(\"begin",
                "(\"commit",
                "(\"rollback",
                "\"start transaction",
                "\"begin isolation",
            ] {
                assert!(
                    !text.contains(forbidden),
                    "{path} opens or ends a transaction by hand ({forbidden:?})"
                );
            }
        }
    }
    setters.sort();
    setters.dedup();
    // bind_tenant(), the first statement of every tenant transaction (which
    // only src/db/mod.rs opens, for every role), and tenant_usage(), the
    // analytics function that visits each tenant in turn under its own RLS
    // context and returns only counts; and their Citus variants.
    assert_eq!(
        setters,
        [
            "sql/citus/01_functions.sql",
            "sql/migrations/V2__lifecycle.sql",
            "sql/migrations/V4__bind_tenant.sql"
        ],
        "where the tenant is set"
    );
}

fn relative(root: &Path, path: &str) -> String {
    Path::new(path)
        .strip_prefix(root)
        .map_or_else(|_| path.to_owned(), |p| p.display().to_string())
}

#[test]
fn the_session_level_rule_catches_split_and_quoted_forms() {
    // The rule above, shown to catch what a line-by-line grep would miss.
    for sneaky in [
        "select set_config('app.tenant_id', $1,\n    false)",
        "const SQL: &str = \"select set_config('app.tenant_id', $1, \\\n false)\";",
        "perform set_config('app.tenant_id', id::text, false);",
    ] {
        let text = normalized(&sneaky.to_lowercase());
        let calls = set_config_calls(&text);
        assert!(
            calls
                .iter()
                .any(|call| call.rsplit(',').next().map(str::trim) != Some("true")),
            "{sneaky}"
        );
    }
    assert!(
        normalized("SET\n\"app.tenant_id\" = 'x'")
            .to_lowercase()
            .contains("set \"app.")
    );
}

#[test]
fn every_environment_variable_the_code_reads_is_in_the_readme_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let readers = [
        "src/config/mod.rs",
        "src/config/operator.rs",
        "src/dev.rs",
        "src/telemetry.rs",
        "src/db/local.rs",
        "tests/api/helpers.rs",
    ];
    let mut names = Vec::new();
    for file in readers {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for literal in text.split('"').skip(1).step_by(2) {
            let looks_like_a_variable = literal.len() > 3
                && literal.contains('_')
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if looks_like_a_variable || ["PORT", "HOST"].contains(&literal) {
                names.push(literal.to_owned());
            }
        }
    }
    // Cargo's compile-time variables and a file name, not configuration.
    names.retain(|name| {
        !["CARGO_MANIFEST_DIR", "CARGO_TARGET_TMPDIR", "PG_VERSION"].contains(&name.as_str())
    });
    names.sort();
    names.dedup();
    assert!(names.len() >= 20, "found the variables: {names:?}");
    let undocumented: Vec<&String> = names
        .iter()
        .filter(|name| !readme.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "missing from the README's configuration table: {undocumented:?}"
    );
}

#[test]
fn routes_are_only_added_with_their_documentation() {
    let mut sources = Vec::new();
    rust_sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    for (path, text) in &sources {
        for forbidden in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            "routing::get",
            "routing::post",
        ] {
            assert!(
                !text.contains(forbidden),
                "{path} uses {forbidden:?}: add routes with utoipa_axum::routes! so they are documented"
            );
        }
    }
}

#[test]
fn only_the_kid_lookup_reads_a_token_unverified() {
    let mut sources = Vec::new();
    rust_sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    for (path, text) in &sources {
        assert!(
            !text.contains("insecure_decode"),
            "{path} decodes a JWT without verifying it"
        );
        assert!(
            !text.contains("insecure_disable_signature_validation"),
            "{path} disables JWT signature checks"
        );
        if text.contains("decode_header(") {
            assert!(
                path.ends_with("auth/jwt.rs"),
                "{path} reads JWT headers unverified"
            );
        }
    }
}

/// `cargo audit` and `cargo deny` need the RustSec database from GitHub, which
/// CI cannot reach; this pins the fixed versions of the advisories that
/// matter most here, read from the lock file that builds the binary.
#[test]
fn locked_dependencies_include_the_fixes_for_known_advisories() {
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    let version_of = |name: &str| -> Vec<Vec<u64>> {
        lock.split("[[package]]")
            .filter(|block| block.contains(&format!("\nname = \"{name}\"\n")))
            .filter_map(|block| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix("version = \""))
            })
            .map(|version| {
                version
                    .trim_end_matches('"')
                    .split('.')
                    .map(|part| part.parse().unwrap_or(0))
                    .collect()
            })
            .collect()
    };
    // (crate, first fixed version, advisory)
    let floors: [(&str, [u64; 3], &str); 4] = [
        ("h2", [0, 4, 4], "RUSTSEC-2024-0332 CONTINUATION flood"),
        (
            "jsonwebtoken",
            [10, 3, 0],
            "CVE-2026-25537 exp/nbf type confusion",
        ),
        ("hyper", [1, 0, 0], "pre-1.0 request smuggling fixes"),
        (
            "tokio-postgres",
            [0, 7, 18],
            "the version the security notes were verified against",
        ),
    ];
    for (name, floor, advisory) in floors {
        let versions = version_of(name);
        assert!(!versions.is_empty(), "{name} is not in Cargo.lock");
        for version in versions {
            assert!(
                version.as_slice() >= floor.as_slice(),
                "{name} {version:?} predates the fix for {advisory}"
            );
        }
    }
}

#[test]
fn every_security_reference_names_a_real_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let document = std::fs::read_to_string(root.join("docs/SECURITY.md")).unwrap();
    let mut checked = 0;
    for reference in document
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|r| r.contains("::") && !r.contains(' '))
    {
        let (file, name) = reference.rsplit_once("::").unwrap();
        let path = if file.ends_with(".rs") {
            root.join(file)
        } else {
            root.join(format!("tests/api/{file}.rs"))
        };
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{reference}: no file {}", path.display()));
        assert!(
            source.contains(&format!("fn {name}(")) || source.contains(&format!("fn {name}<")),
            "docs/SECURITY.md names {reference}, which does not exist"
        );
        checked += 1;
    }
    assert!(checked >= 60, "found only {checked} references");
}

//! Rules about the source itself, which no runtime test can see: the tenant is
//! only ever set transaction-locally, in one place, and nothing opens or ends
//! a transaction by hand.

use std::path::Path;

fn rust_sources(dir: &Path, found: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap().to_lowercase(),
            ));
        }
    }
}

#[test]
fn the_tenant_is_set_only_transaction_locally_and_only_by_with_tenant() {
    let mut sources = Vec::new();
    rust_sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    assert!(sources.len() > 10, "found the sources");
    let mut setters = Vec::new();
    for (path, text) in &sources {
        for forbidden in ["set app.", "set session app.", "set local app."] {
            assert!(
                !text.contains(forbidden),
                "{path} contains {forbidden:?}: the tenant must be set only with set_config(.., true)"
            );
        }
        for line in text.lines().filter(|line| line.contains("set_config(")) {
            assert!(
                !line.contains("false"),
                "{path}: session-level set_config: {line}"
            );
        }
        for forbidden in [
            "execute(\"begin",
            "execute(\"commit",
            "execute(\"rollback",
            "query(\"begin",
            "\"start transaction",
        ] {
            assert!(
                !text.contains(forbidden),
                "{path} opens or ends a transaction by hand ({forbidden:?})"
            );
        }
        if text.contains("set_config('app.tenant_id'") {
            setters.push(path.rsplit("/src/").next().unwrap().to_owned());
        }
    }
    assert_eq!(setters, ["db/mod.rs"], "one place sets the tenant");
}

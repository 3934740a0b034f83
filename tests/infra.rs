//! The Terraform in `infra/`, read as HCL and checked against the binary:
//!
//! - every variable of every module has a type and a description;
//! - the Cloud Run service sets everything `tenantry serve` needs and the
//!   migration job everything `tenantry migrate` needs: the names they set,
//!   with sample values, make `Settings::from_source` and
//!   `MigrateSettings::from_source` succeed, and every name is one the binary
//!   (or the observability contract) reads;
//! - secrets reach the service and the job by Secret Manager reference only,
//!   and no password, secret value or credential-bearing URL is a literal;
//! - the plans' limits Terraform uses at the edge are the binary's defaults;
//! - with a `terraform` binary on PATH, the TENANT_LIMITS Terraform renders
//!   from a sample `tenants` variable is a document the service accepts, and
//!   each tenant's edge rule admits what the service's limiter admits.
//!
//! `infra/validate.sh` runs this test with the other offline checks.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use hcl::{Block, Body, Expression, ObjectKey};
use tenantry::{
    config::{MigrateSettings, Settings},
    domain::{LimitsDocument, Plan, TenantLimits},
};

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("infra")
}

/// Every `.tf` file under `infra/`, parsed, by path.
fn terraform_files() -> BTreeMap<PathBuf, Body> {
    fn walk(dir: &Path, files: &mut BTreeMap<PathBuf, Body>) {
        for entry in std::fs::read_dir(dir).expect("read infra/") {
            let path = entry.expect("entry").path();
            if path.is_dir() && !path.ends_with(".terraform") {
                walk(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "tf") {
                let text = std::fs::read_to_string(&path).expect("read .tf");
                let body = hcl::parse(&text)
                    .unwrap_or_else(|e| panic!("{} is not valid HCL: {e}", path.display()));
                files.insert(path, body);
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(&infra(), &mut files);
    assert!(files.len() >= 15, "expected the root and five modules");
    files
}

fn module(name: &str) -> Vec<Body> {
    let dir = infra().join("modules").join(name);
    terraform_files()
        .into_iter()
        .filter(|(path, _)| path.parent() == Some(dir.as_path()))
        .map(|(_, body)| body)
        .collect()
}

fn blocks<'a>(body: &'a Body, identifier: &'a str) -> impl Iterator<Item = &'a Block> {
    body.blocks().filter(move |b| b.identifier() == identifier)
}

fn labelled<'a>(bodies: &'a [Body], identifier: &str, labels: &[&str]) -> &'a Block {
    bodies
        .iter()
        .flat_map(|body| body.blocks())
        .find(|b| {
            b.identifier() == identifier
                && b.labels()
                    .iter()
                    .map(|l| l.as_str())
                    .eq(labels.iter().copied())
        })
        .unwrap_or_else(|| panic!("no {identifier} {labels:?}"))
}

fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

/// The `locals` of `bodies`, by name.
fn locals(bodies: &[Body]) -> BTreeMap<String, Expression> {
    bodies
        .iter()
        .flat_map(|body| blocks(body, "locals"))
        .flat_map(|block| block.body().attributes())
        .map(|a| (a.key.to_string(), a.expr.clone()))
        .collect()
}

/// The keys of every object literal in `expr` (through `merge(..)`,
/// conditionals and parentheses): the names a map-valued local defines.
fn object_keys(expr: &Expression, keys: &mut BTreeSet<String>) {
    match expr {
        Expression::Object(object) => {
            for key in object.keys() {
                match key {
                    ObjectKey::Identifier(id) => keys.insert(id.to_string()),
                    ObjectKey::Expression(Expression::String(s)) => keys.insert(s.clone()),
                    other => panic!("unexpected object key {other:?}"),
                };
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|a| object_keys(a, keys)),
        Expression::Conditional(c) => {
            object_keys(&c.true_expr, keys);
            object_keys(&c.false_expr, keys);
        }
        Expression::Parenthesis(inner) => object_keys(inner, keys),
        _ => {}
    }
}

/// `local.NAME` -> NAME.
fn local_name(expr: &Expression) -> String {
    let text = expr.to_string();
    text.strip_prefix("local.")
        .unwrap_or_else(|| panic!("expected local.NAME, got {text}"))
        .to_owned()
}

/// The environment a container block sets: plain names and names taken from
/// Secret Manager (`value_source`), each from literal `env` blocks or from
/// `dynamic "env"` blocks over a local map.
#[derive(Debug, Default)]
struct Env {
    plain: BTreeMap<String, Expression>,
    secret: BTreeSet<String>,
}

fn container_env(container: &Block, locals: &BTreeMap<String, Expression>) -> Env {
    let mut env = Env::default();
    for block in container.body().blocks() {
        match (
            block.identifier(),
            block.labels().first().map(|l| l.as_str()),
        ) {
            ("env", None) => {
                let name = match attribute(block.body(), "name") {
                    Some(Expression::String(name)) => name.clone(),
                    other => panic!("env name must be a literal, got {other:?}"),
                };
                if blocks(block.body(), "value_source").next().is_some() {
                    env.secret.insert(name);
                } else {
                    let value = attribute(block.body(), "value").expect("env value").clone();
                    env.plain.insert(name, value);
                }
            }
            ("dynamic", Some("env")) => {
                let for_each = attribute(block.body(), "for_each").expect("for_each");
                let map = locals
                    .get(&local_name(for_each))
                    .expect("dynamic env iterates over a local");
                let content = blocks(block.body(), "content").next().expect("content");
                let mut names = BTreeSet::new();
                object_keys(map, &mut names);
                if blocks(content.body(), "value_source").next().is_some() {
                    env.secret.extend(names);
                } else {
                    let Expression::Object(object) = map else {
                        panic!("plain env must be an object literal");
                    };
                    for (key, value) in object {
                        let ObjectKey::Identifier(id) = key else {
                            panic!("plain env keys are identifiers");
                        };
                        env.plain.insert(id.to_string(), value.clone());
                    }
                }
            }
            _ => {}
        }
    }
    env
}

fn service_containers() -> (Env, Env) {
    let bodies = module("service");
    let locals = locals(&bodies);
    let service = labelled(
        &bodies,
        "resource",
        &["google_cloud_run_v2_service", "main"],
    );
    let template = blocks(service.body(), "template").next().expect("template");
    let app = blocks(template.body(), "containers")
        .find(|c| attribute(c.body(), "name") == Some(&Expression::from("tenantry")))
        .expect("the tenantry container");
    let job = labelled(&bodies, "resource", &["google_cloud_run_v2_job", "migrate"]);
    let job_container = blocks(job.body(), "template")
        .flat_map(|t| blocks(t.body(), "template"))
        .flat_map(|t| blocks(t.body(), "containers"))
        .next()
        .expect("the job's container");
    (
        container_env(app, &locals),
        container_env(job_container, &locals),
    )
}

/// A plausible value for each name the deployment sets; a literal from the
/// HCL wins over it.
fn sample(name: &str) -> String {
    let value = match name {
        "DATABASE_URL"
        | "ADMIN_DATABASE_URL"
        | "ANALYTICS_DATABASE_URL"
        | "MIGRATION_DATABASE_URL" => "postgres://role:pw@10.0.0.3:5432/tenantry",
        "JWT_KEYS" => "k1:0123456789abcdef0123456789abcdef0123",
        "ADMIN_TOKEN"
        | "RUNTIME_ROLE_PASSWORD"
        | "ADMIN_ROLE_PASSWORD"
        | "ANALYTICS_ROLE_PASSWORD" => "0123456789abcdef0123456789abcdef",
        "BASE_DOMAIN" => "example.com",
        "SIGNUP_MODE" => "admin",
        "DATABASE_POOL_SIZE" | "RATE_LIMIT_INSTANCES" => "8",
        "REQUEST_TIMEOUT_MS" => "14000",
        "TENANT_LIMITS" => r#"{"tenants": {"acme": {"requests_per_second": 100}}}"#,
        "GOOGLE_CLOUD_PROJECT" => "my-project",
        "OTEL_TRACES_SAMPLER_ARG" => "0.1",
        other => panic!("{other} is set by infra/ but has no sample value in tests/infra.rs"),
    };
    value.to_owned()
}

fn source_for(env: &Env) -> impl Fn(&str) -> Option<String> + use<> {
    let mut values: BTreeMap<String, String> = env
        .secret
        .iter()
        .map(|name| (name.clone(), sample(name)))
        .collect();
    for (name, value) in &env.plain {
        let value = match value {
            Expression::String(literal) => literal.clone(),
            _ => sample(name),
        };
        values.insert(name.clone(), value);
    }
    move |name: &str| values.get(name).cloned()
}

/// Names the observability contract (issue 7) has the app read.
const OBSERVABILITY_CONTRACT: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "GOOGLE_CLOUD_PROJECT",
    // Read by the OpenTelemetry SDK itself, as the specification says.
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

/// Every `"NAME"` string literal in `src/`.
fn names_the_binary_reads() -> BTreeSet<String> {
    fn walk(dir: &Path, text: &mut String) {
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, text);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                text.push_str(&std::fs::read_to_string(&path).expect("read"));
            }
        }
    }
    let mut text = String::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut text,
    );
    // Every run between two quotes, whatever their parity (char literals
    // and escapes make parity unreliable): a superset of the literals.
    text.split('"')
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_variable_of_every_module_has_a_type_and_a_description() {
    for (path, body) in terraform_files() {
        for variable in blocks(&body, "variable") {
            let name = variable.labels()[0].as_str();
            for required in ["type", "description"] {
                assert!(
                    attribute(variable.body(), required).is_some(),
                    "{}: variable {name} has no {required}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_service_and_the_job_set_everything_the_binary_requires() {
    let (service, job) = service_containers();

    Settings::from_source(&source_for(&service))
        .expect("the service's environment is a valid configuration for `serve`");
    let migrate = MigrateSettings::from_source(&source_for(&job))
        .expect("the job's environment is a valid configuration for `migrate`");
    assert!(
        migrate.passwords.runtime.is_some()
            && migrate.passwords.admin.is_some()
            && migrate.passwords.analytics.is_some(),
        "the job gives every login role its password"
    );

    // Negative control: without one of its secrets the service would not start.
    for missing in ["DATABASE_URL", "JWT_KEYS", "ADMIN_TOKEN"] {
        let mut short = Env::default();
        short.plain.clone_from(&service.plain);
        short.secret = service.secret.clone();
        short.secret.remove(missing);
        let error = Settings::from_source(&source_for(&short)).expect_err(missing);
        assert!(error.to_string().contains(missing), "{error}");
    }

    let read = names_the_binary_reads();
    for name in service
        .plain
        .keys()
        .chain(&service.secret)
        .chain(job.plain.keys())
        .chain(&job.secret)
    {
        assert!(
            read.contains(name) || OBSERVABILITY_CONTRACT.contains(&name.as_str()),
            "infra/ sets {name}, which the binary does not read"
        );
    }

    // Behind the global external Application Load Balancer.
    assert_eq!(
        service.plain.get("TRUSTED_PROXY_HOPS"),
        Some(&Expression::from("2"))
    );
    assert_eq!(
        service.plain["RATE_LIMIT_INSTANCES"].to_string(),
        "tostring(var.max_instances)"
    );
    assert_eq!(
        service.plain.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        Some(&Expression::from("http://localhost:4318"))
    );
}

#[test]
fn secrets_are_references_never_literals() {
    let (service, job) = service_containers();
    for env in [&service, &job] {
        for name in env.plain.keys() {
            assert!(
                !(name.contains("DATABASE_URL")
                    || name.ends_with("PASSWORD")
                    || name.ends_with("TOKEN")
                    || name == "JWT_KEYS"),
                "{name} is a secret but is set as a plain value"
            );
        }
    }

    fn walk(body: &Body, path: &Path, found: &mut Vec<String>) {
        for attribute in body.attributes() {
            let key = attribute.key.as_str();
            let literal = matches!(attribute.expr, Expression::String(_));
            if literal && ["password", "secret_data", "secret_data_wo"].contains(&key) {
                found.push(format!("{}: {key} is a literal", path.display()));
            }
        }
        for block in body.blocks() {
            walk(block.body(), path, found);
        }
    }
    let mut found = Vec::new();
    for (path, body) in terraform_files() {
        walk(&body, &path, &mut found);
        // A URL with credentials in it, other than one built from references.
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines() {
            if let Some((_, rest)) = line.split_once("://")
                && let Some((userinfo, _)) = rest.split_once('@')
                && userinfo.contains(':')
                && !userinfo.contains("${")
            {
                found.push(format!("{}: credentials in {line:?}", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn terraforms_plan_limits_are_the_binarys() {
    let root: Vec<Body> = terraform_files()
        .into_iter()
        .filter(|(path, _)| path.parent() == Some(infra().as_path()))
        .map(|(_, body)| body)
        .collect();
    let Expression::Object(plans) = &locals(&root)["plan_defaults"] else {
        panic!("plan_defaults is an object literal");
    };
    assert_eq!(plans.len(), Plan::ALL.len());
    for (key, value) in plans {
        let ObjectKey::Identifier(name) = key else {
            panic!("plan names are identifiers")
        };
        let plan = Plan::parse(name.as_str()).expect("a plan");
        let defaults = TenantLimits::plan_default(plan);
        let expected = serde_json::to_value(&defaults).expect("serialize");
        let actual: serde_json::Value = hcl::from_str(&format!("v = {value}"))
            .map(|v: BTreeMap<String, serde_json::Value>| v["v"].clone())
            .expect("plain values");
        assert_eq!(actual, expected, "plan {name}");
    }
}

/// Renders the root module's tenant locals with Terraform itself (no
/// provider is involved, so nothing is downloaded) for a sample `tenants`.
fn render_with_terraform(terraform: &Path) -> serde_json::Value {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("infra-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for file in ["variables.tf", "tenants.tf"] {
        std::fs::copy(infra().join(file), dir.join(file)).expect("copy");
    }
    std::fs::write(
        dir.join("outputs.tf"),
        "output \"tenant_limits\" { value = local.tenant_limits_json }\n\
         output \"edge\" { value = local.tenant_edge_limits }\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("sample.auto.tfvars.json"),
        r#"{"project_id": "p", "region": "europe-west1", "base_domain": "example.com",
            "tenants": {
              "acme": {"plan": "pro", "custom_domains": ["notes.acme.io"],
                       "limits": {"requests_per_second": 100, "max_notes": 0}},
              "globex": {},
              "initech": {"plan": "enterprise", "limits": {"burst": 50}}},
            "plan_limits": {"free": {"burst": 30, "max_users": 5}}}"#,
    )
    .expect("write");
    let run = |args: &[&str]| {
        let output = Command::new(terraform)
            .args(args)
            .current_dir(&dir)
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .env("TF_IN_AUTOMATION", "1")
            .output()
            .expect("run terraform");
        assert!(
            output.status.success(),
            "terraform {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    run(&["init", "-backend=false", "-input=false"]);
    run(&["apply", "-auto-approve", "-input=false", "-lock=false"]);
    let outputs = run(&["output", "-json"]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
    serde_json::from_slice(&outputs).expect("terraform output -json")
}

#[test]
fn one_tenants_variable_drives_both_tenant_limits_and_the_edge() {
    let Some(terraform) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("terraform"))
            .find(|candidate| candidate.is_file())
    }) else {
        eprintln!("no terraform on PATH: TENANT_LIMITS rendering not checked");
        return;
    };
    let outputs = render_with_terraform(&terraform);

    let json = outputs["tenant_limits"]["value"]
        .as_str()
        .expect("a string");
    let document = LimitsDocument::parse(json).expect("the service accepts TENANT_LIMITS");
    let effective = |slug: &str, plan: Plan| {
        document
            .tenant_overrides()
            .find(|(s, _)| *s == slug)
            .map_or_else(
                || document.plan(plan),
                |(_, o)| o.applied_to(document.plan(plan)),
            )
    };
    let acme = effective("acme", Plan::Pro);
    assert_eq!(acme.requests_per_second, 100);
    assert_eq!(acme.burst, 100, "inherited from pro");
    assert_eq!(acme.max_notes, None, "0 in Terraform is unlimited");
    let globex = effective("globex", Plan::Free);
    assert_eq!(
        (globex.burst, globex.max_users),
        (30, Some(5)),
        "plan_limits"
    );
    let initech = effective("initech", Plan::Enterprise);

    // The edge admits per client and minute what the service's two buckets
    // of the tenant (signed-in, sign-in/registration) admit at most.
    let edge = &outputs["edge"]["value"];
    for (slug, limits) in [("acme", &acme), ("globex", &globex), ("initech", &initech)] {
        assert_eq!(
            edge[slug]["requests_per_minute"],
            2 * (u64::from(limits.requests_per_second) * 60 + u64::from(limits.burst)),
            "{slug}"
        );
    }
    assert_eq!(
        edge["acme"]["hosts"],
        serde_json::json!(["acme.example.com", "notes.acme.io"])
    );
}

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
//!   each tenant's edge rule admits what the service's limiter admits;
//! - release rings (docs/ROLLOUT.md): Terraform's rings are the binary's
//!   (`Ring::ALL`), each has a serverless NEG on the Cloud Run tag of its
//!   name and a backend behind Cloud Armor, the URL map routes the hosts of
//!   the rings other than stable to their backends, the service carries a
//!   tag per ring, Cloud Build deploys revisions without touching traffic,
//!   and (with `terraform`) a tenant's ring decides which host list, and so
//!   which backend, its hosts are in.
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
    domain::{LimitsDocument, Plan, Ring, TenantLimits},
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
        "API_DEPRECATIONS" => "2026-11-22:2026-12-07:2027-06-30",
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
    let root = root_module();
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

/// The `terraform` binary on PATH, if any.
fn terraform_on_path() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("terraform"))
            .find(|candidate| candidate.is_file())
    })
}

const SAMPLE_TFVARS: &str = r#"{"project_id": "p", "region": "europe-west1", "base_domain": "example.com",
    "tenants": {
      "acme": {"plan": "pro", "custom_domains": ["notes.acme.io"],
               "limits": {"requests_per_second": 100, "max_notes": 0}},
      "globex": {},
      "initech": {"plan": "enterprise", "limits": {"burst": 50}}},
    "plan_limits": {"free": {"burst": 30, "max_users": 5}}}"#;

/// Renders the root module's tenant and ring locals with Terraform itself
/// (no provider is involved, so nothing is downloaded) for `tfvars`, with
/// the edge module's host-rule selection (`routed_rings`, copied from its
/// HCL) applied to the root's `ring_hosts`. `Err` carries Terraform's
/// complaint when it refuses the variables.
fn render_with_terraform(terraform: &Path, tfvars: &str) -> Result<serde_json::Value, String> {
    static RENDERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "infra-render-{}-{}",
        std::process::id(),
        RENDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for file in ["variables.tf", "tenants.tf", "rings.tf"] {
        std::fs::copy(infra().join(file), dir.join(file)).expect("copy");
    }
    let routed = locals(&module("edge"))["routed_rings"]
        .to_string()
        .replace("var.ring_hosts", "local.ring_hosts")
        .replace("var.default_ring", "local.default_ring");
    std::fs::write(
        dir.join("outputs.tf"),
        format!(
            "locals {{\n  edge_routed_rings = {routed}\n}}\n\
             output \"tenant_limits\" {{ value = local.tenant_limits_json }}\n\
             output \"edge\" {{ value = local.tenant_edge_limits }}\n\
             output \"ring_hosts\" {{ value = local.ring_hosts }}\n\
             output \"ring_traffic\" {{ value = local.ring_traffic }}\n\
             output \"host_rules\" {{ value = local.edge_routed_rings }}\n"
        ),
    )
    .expect("write");
    std::fs::write(dir.join("sample.auto.tfvars.json"), tfvars).expect("write");
    let run = |args: &[&str]| {
        let output = Command::new(terraform)
            .args(args)
            .current_dir(&dir)
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .env("TF_IN_AUTOMATION", "1")
            .output()
            .expect("run terraform");
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(format!(
                "terraform {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    let outputs = run(&["init", "-backend=false", "-input=false"])
        .and_then(|_| run(&["apply", "-auto-approve", "-input=false", "-lock=false"]))
        .and_then(|_| run(&["output", "-json"]));
    std::fs::remove_dir_all(&dir).expect("cleanup");
    outputs.map(|json| serde_json::from_slice(&json).expect("terraform output -json"))
}

#[test]
fn one_tenants_variable_drives_both_tenant_limits_and_the_edge() {
    let Some(terraform) = terraform_on_path() else {
        eprintln!("no terraform on PATH: TENANT_LIMITS rendering not checked");
        return;
    };
    let outputs = render_with_terraform(&terraform, SAMPLE_TFVARS).unwrap();

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

/// The ring names the binary knows, in order.
fn ring_names() -> Vec<String> {
    Ring::ALL
        .iter()
        .map(|ring| ring.as_str().to_owned())
        .collect()
}

/// The root module's `.tf` files.
fn root_module() -> Vec<Body> {
    terraform_files()
        .into_iter()
        .filter(|(path, _)| path.parent() == Some(infra().as_path()))
        .map(|(_, body)| body)
        .collect()
}

/// A list of string literals, as HCL writes `["a", "b"]`.
fn strings(expr: &Expression) -> Vec<String> {
    let Expression::Array(items) = expr else {
        panic!("expected a list literal, got {expr}");
    };
    items
        .iter()
        .map(|item| match item {
            Expression::String(s) => s.clone(),
            other => panic!("expected a string literal, got {other}"),
        })
        .collect()
}

/// The single block `identifier` in `body`.
fn block<'a>(body: &'a Body, identifier: &'a str) -> &'a Block {
    let mut found = blocks(body, identifier);
    let first = found
        .next()
        .unwrap_or_else(|| panic!("no {identifier} block"));
    assert!(found.next().is_none(), "more than one {identifier} block");
    first
}

/// `attribute` as text, e.g. `google_compute_backend_service.ring[each.key].id`.
fn text(body: &Body, key: &str) -> String {
    attribute(body, key)
        .unwrap_or_else(|| panic!("no attribute {key}"))
        .to_string()
}

/// The `dynamic "LABEL"` block of `body`.
fn dynamic<'a>(body: &'a Body, label: &str) -> &'a Block {
    body.blocks()
        .find(|b| {
            b.identifier() == "dynamic" && b.labels().first().map(|l| l.as_str()) == Some(label)
        })
        .unwrap_or_else(|| panic!("no dynamic \"{label}\" block"))
}

#[test]
fn terraforms_rings_are_the_binarys_and_the_tenants_variable_accepts_exactly_them() {
    let root = root_module();
    let locals = locals(&root);
    assert_eq!(strings(&locals["rings"]), ring_names(), "local.rings");
    assert_eq!(
        locals["default_ring"],
        Expression::from(Ring::default().as_str()),
        "the default ring is where new tenants start"
    );

    let tenants = labelled(&root, "variable", &["tenants"]);
    let ty = text(tenants.body(), "type");
    assert!(
        ty.contains(&format!("ring = optional(string, \"{}\")", Ring::default())),
        "a tenant without a ring is in the default one: {ty}"
    );
    // The validation that names `tenant.ring` lists the rings it accepts.
    let accepted: Vec<Vec<String>> = blocks(tenants.body(), "validation")
        .filter_map(|validation| {
            let condition = attribute(validation.body(), "condition")?;
            let mut lists = Vec::new();
            find_contains_of(condition, "tenant.ring", &mut lists);
            lists.pop()
        })
        .collect();
    assert_eq!(accepted, [ring_names()], "one validation of tenant.ring");

    // ring_revisions has one entry per ring.
    let revisions = labelled(&root, "variable", &["ring_revisions"]);
    let ty = text(revisions.body(), "type");
    for ring in Ring::ALL {
        assert!(
            ty.contains(&format!("{ring} = optional(string, \"\")")),
            "{ty}"
        );
    }
}

/// The first arguments of every `contains([..], ARG)` call in `expr`.
fn find_contains_of(expr: &Expression, arg: &str, found: &mut Vec<Vec<String>>) {
    match expr {
        Expression::FuncCall(call) => {
            if call.name.to_string() == "contains"
                && call.args.get(1).map(ToString::to_string).as_deref() == Some(arg)
            {
                found.push(strings(&call.args[0]));
            }
            call.args
                .iter()
                .for_each(|a| find_contains_of(a, arg, found));
        }
        Expression::ForExpr(for_expr) => {
            find_contains_of(&for_expr.collection_expr, arg, found);
            find_contains_of(&for_expr.value_expr, arg, found);
        }
        Expression::Parenthesis(inner) => find_contains_of(inner, arg, found),
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Binary(binary) => {
                find_contains_of(&binary.lhs_expr, arg, found);
                find_contains_of(&binary.rhs_expr, arg, found);
            }
            hcl::expr::Operation::Unary(unary) => find_contains_of(&unary.expr, arg, found),
        },
        _ => {}
    }
}

#[test]
fn every_ring_has_a_neg_on_its_tag_and_a_backend_behind_cloud_armor() {
    let root = root_module();
    let edge_call = labelled(&root, "module", &["edge"]);
    assert_eq!(text(edge_call.body(), "rings"), "local.rings");
    assert_eq!(text(edge_call.body(), "default_ring"), "local.default_ring");
    assert_eq!(text(edge_call.body(), "ring_hosts"), "local.ring_hosts");

    let edge = module("edge");
    let neg = labelled(
        &edge,
        "resource",
        &["google_compute_region_network_endpoint_group", "ring"],
    );
    assert_eq!(text(neg.body(), "for_each"), "toset(var.rings)");
    assert_eq!(
        attribute(neg.body(), "network_endpoint_type"),
        Some(&Expression::from("SERVERLESS"))
    );
    let cloud_run = block(neg.body(), "cloud_run");
    assert_eq!(text(cloud_run.body(), "service"), "var.service_name");
    assert_eq!(
        text(cloud_run.body(), "tag"),
        "each.key",
        "each ring's NEG reaches the revision tagged with the ring's name"
    );

    let backend = labelled(
        &edge,
        "resource",
        &["google_compute_backend_service", "ring"],
    );
    assert_eq!(text(backend.body(), "for_each"), "toset(var.rings)");
    assert_eq!(
        text(block(backend.body(), "backend").body(), "group"),
        "google_compute_region_network_endpoint_group.ring[each.key].id",
        "each ring's backend serves through that ring's NEG"
    );
    assert_eq!(
        text(backend.body(), "security_policy"),
        "google_compute_security_policy.edge.id",
        "every ring's backend is behind the same Cloud Armor policy"
    );
    assert_eq!(
        attribute(block(backend.body(), "log_config").body(), "enable"),
        Some(&Expression::Bool(true))
    );
    // No backend or NEG outside the rings: nothing bypasses the routing.
    for kind in [
        "google_compute_backend_service",
        "google_compute_region_network_endpoint_group",
    ] {
        let names: Vec<&str> = edge
            .iter()
            .flat_map(|body| blocks(body, "resource"))
            .filter(|b| b.labels()[0].as_str() == kind)
            .map(|b| b.labels()[1].as_str())
            .collect();
        assert_eq!(names, ["ring"], "{kind}");
    }
}

#[test]
fn the_url_map_routes_each_ring_but_the_default_to_its_own_backend() {
    let edge = module("edge");
    let url_map = labelled(&edge, "resource", &["google_compute_url_map", "https"]);
    assert_eq!(
        text(url_map.body(), "default_service"),
        "google_compute_backend_service.ring[var.default_ring].id",
        "hosts no rule names go to the default ring"
    );
    let host_rule = dynamic(url_map.body(), "host_rule");
    let path_matcher = dynamic(url_map.body(), "path_matcher");
    assert_eq!(text(host_rule.body(), "for_each"), "local.routed_rings");
    assert_eq!(text(path_matcher.body(), "for_each"), "local.routed_rings");
    let rule = block(host_rule.body(), "content");
    assert_eq!(text(rule.body(), "hosts"), "host_rule.value");
    assert_eq!(text(rule.body(), "path_matcher"), "host_rule.key");
    let matcher = block(path_matcher.body(), "content");
    assert_eq!(text(matcher.body(), "name"), "path_matcher.key");
    assert_eq!(
        text(matcher.body(), "default_service"),
        "google_compute_backend_service.ring[path_matcher.key].id",
        "a ring's hosts reach that ring's backend"
    );
    // Which rings get a rule is evaluated with terraform in
    // a_tenants_ring_decides_which_backend_serves_its_hosts.
}

#[test]
fn the_service_carries_one_traffic_tag_per_ring_and_terraform_owns_it() {
    let root = root_module();
    let call = labelled(&root, "module", &["service"]);
    assert_eq!(text(call.body(), "ring_traffic"), "local.ring_traffic");

    let service_module = module("service");
    let service = labelled(
        &service_module,
        "resource",
        &["google_cloud_run_v2_service", "main"],
    );
    let traffic = dynamic(service.body(), "traffic");
    assert_eq!(text(traffic.body(), "for_each"), "var.ring_traffic");
    let content = block(traffic.body(), "content");
    assert_eq!(text(content.body(), "tag"), "traffic.value.tag");
    assert_eq!(text(content.body(), "percent"), "traffic.value.percent");
    // The template is the default ring's; Cloud Build sets each ring's own.
    let (env, _) = service_containers();
    assert_eq!(
        env.plain.get("RELEASE_RING"),
        Some(&Expression::from(Ring::default().as_str()))
    );
    let lifecycle = block(service.body(), "lifecycle");
    let ignored = text(lifecycle.body(), "ignore_changes");
    assert!(
        !ignored.contains("traffic"),
        "Terraform owns the traffic (the rings' tags), so it must not ignore it: {ignored}"
    );
    assert!(
        ignored.contains("template[0].containers[0].image"),
        "{ignored}"
    );
}

#[test]
fn cloud_build_deploys_a_revision_per_ring_and_leaves_traffic_to_terraform() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudbuild.yaml");
    let build = std::fs::read_to_string(path).expect("read cloudbuild.yaml");
    // Only comments may mention the old percentage canary.
    let steps: String = build
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!steps.contains("_CANARY_PERCENT"));
    let default = steps
        .lines()
        .find_map(|line| line.trim().strip_prefix("_RING:"))
        .expect("a default _RING")
        .trim();
    assert!(
        Ring::parse(default).is_ok(),
        "_RING defaults to a ring, not {default}"
    );
    assert!(
        steps.contains(&format!("{}) ;;", ring_names().join("|"))),
        "the deploy step accepts exactly the rings the binary knows"
    );
    assert!(
        steps.contains("--update-env-vars \"RELEASE_RING=$$ring\""),
        "the ring's revision is told its ring"
    );
    assert!(steps.contains("--no-traffic"));
    for moves_traffic in ["update-traffic", "--tag ", "--to-tags", "--to-latest"] {
        assert!(
            !steps.contains(moves_traffic),
            "Cloud Build must not move traffic ({moves_traffic}): Terraform's ring_revisions does"
        );
    }
}

#[test]
fn a_tenants_ring_decides_which_backend_serves_its_hosts() {
    let Some(terraform) = terraform_on_path() else {
        eprintln!("no terraform on PATH: ring routing not evaluated");
        return;
    };
    let tfvars = |acme_ring: &str, revisions: &str| {
        format!(
            r#"{{"project_id": "p", "region": "europe-west1", "base_domain": "example.com",
                "tenants": {{
                  "acme": {{"plan": "pro", "ring": "{acme_ring}", "custom_domains": ["notes.acme.io"]}},
                  "globex": {{}},
                  "initech": {{"ring": "early"}}}},
                "ring_revisions": {revisions}}}"#
        )
    };
    let pinned = r#"{"canary": "tenantry-b-canary", "stable": "tenantry-a-stable"}"#;

    // acme in canary: its subdomain and custom domain are the canary hosts,
    // with a host rule to the canary backend.
    let canary = render_with_terraform(&terraform, &tfvars("canary", pinned)).unwrap();
    let acme_hosts = serde_json::json!(["acme.example.com", "notes.acme.io"]);
    assert_eq!(canary["ring_hosts"]["value"]["canary"], acme_hosts);
    assert_eq!(
        canary["ring_hosts"]["value"]["stable"],
        serde_json::json!(["globex.example.com"])
    );
    assert_eq!(
        canary["host_rules"]["value"],
        serde_json::json!({"canary": acme_hosts, "early": ["initech.example.com"]}),
        "a host rule for each ring but stable, with that ring's hosts"
    );
    // The tags: stable gets all untagged traffic, canary its own revision,
    // early (no revision of its own) follows stable.
    assert_eq!(
        canary["ring_traffic"]["value"],
        serde_json::json!([
            {"tag": "stable", "revision": "tenantry-a-stable", "percent": 100},
            {"tag": "early", "revision": "tenantry-a-stable", "percent": 0},
            {"tag": "canary", "revision": "tenantry-b-canary", "percent": 0}
        ])
    );

    // Moved back to stable: the canary ring has no hosts and no host rule.
    let stable = render_with_terraform(&terraform, &tfvars("stable", pinned)).unwrap();
    assert_eq!(
        stable["ring_hosts"]["value"]["canary"],
        serde_json::json!([])
    );
    assert_eq!(
        stable["ring_hosts"]["value"]["stable"],
        serde_json::json!(["acme.example.com", "globex.example.com", "notes.acme.io"])
    );
    assert_eq!(
        stable["host_rules"]["value"],
        serde_json::json!({"early": ["initech.example.com"]}),
        "no empty host rule, none for stable"
    );

    // Nothing pinned (the first deployment): every tag on the latest revision.
    let latest = render_with_terraform(&terraform, &tfvars("stable", "{}")).unwrap();
    for target in latest["ring_traffic"]["value"].as_array().expect("targets") {
        assert_eq!(target["revision"], "", "{target}");
    }

    // Terraform refuses a ring the binary does not know, and a canary
    // revision while stable follows the latest revision.
    let error = render_with_terraform(&terraform, &tfvars("beta", pinned)).unwrap_err();
    assert!(error.contains("ring is canary, early or stable"), "{error}");
    let error = render_with_terraform(
        &terraform,
        &tfvars("canary", r#"{"canary": "tenantry-b-canary"}"#),
    )
    .unwrap_err();
    assert!(error.contains("Pin ring_revisions.stable"), "{error}");
}

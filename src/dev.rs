//! `tenantry dev`: the service on a developer's machine in one command.
//!
//! Without `DATABASE_URL` it starts a private PostgreSQL cluster from the
//! system's server binaries in `.devdb/` (or `DEV_DATA_DIR`) on 127.0.0.1:54329
//! (or `DEV_PG_PORT`), creates the owner role and database, migrates as the
//! owner, and serves as the runtime role, exactly as production does. It then
//! makes sure the demo tenants `acme` and `globex` exist, prints curl commands
//! to paste, and serves on http://localhost:8080 until Ctrl-C, when it stops
//! the cluster it started. A second run reuses the cluster and its data.
//!
//! Dev-only defaults (each overridable by its environment variable): HOST
//! 127.0.0.1, SIGNUP_MODE open, a random JWT signing key per run.

use std::path::PathBuf;

use anyhow::Context;
use tokio_postgres::NoTls;

use crate::{
    accounts::NewUserRequest,
    api::tenants::OnboardingRequest,
    config::{ProcessEnv, Settings, Source},
    db::{
        local::{self, LocalCluster},
        migrate,
    },
    error::ApiError,
    startup::Application,
    state::AppState,
};

const DEFAULT_PG_PORT: u16 = 54329;
const DATABASE: &str = "tenantry";
/// Local clusters use trust authentication; the password is for realism only.
const RUNTIME_PASSWORD: &str = "tenantry-dev";

/// A demo tenant and its owner: (slug, name, username, password).
const DEMO_TENANTS: [(&str, &str, &str, &str); 2] = [
    ("acme", "Acme Corporation", "alice", "alice-demo-password"),
    ("globex", "Globex Corporation", "bob", "bob-demo-password"),
];

/// Runs the dev server until Ctrl-C or SIGTERM.
pub async fn run() -> anyhow::Result<()> {
    let local = match ProcessEnv.get("DATABASE_URL") {
        Some(_) => None,
        None => Some(start_local_database().await?),
    };
    let jwt_key = random_hex(32)?;
    let admin_token = ProcessEnv
        .get("ADMIN_TOKEN")
        .map_or_else(|| random_hex(24), Ok)?;
    let port = local.as_ref().map(LocalCluster::port);
    let role_url = move |role: &str| {
        port.map(|port| format!("postgres://{role}:{RUNTIME_PASSWORD}@127.0.0.1:{port}/{DATABASE}"))
    };
    let token = admin_token.clone();
    let env = move |name: &str| {
        ProcessEnv.get(name).or_else(|| match name {
            "DATABASE_URL" => role_url("tenantry_app"),
            // The /admin API and the analytics path, on the local cluster.
            "ADMIN_DATABASE_URL" => role_url("tenantry_admin"),
            "ANALYTICS_DATABASE_URL" => role_url("tenantry_analytics"),
            "ADMIN_TOKEN" => Some(token.clone()),
            "HOST" => Some("127.0.0.1".to_owned()),
            "JWT_KEYS" => Some(format!("dev:{jwt_key}")),
            "SIGNUP_MODE" => Some("open".to_owned()),
            _ => None,
        })
    };
    let served = serve(&env, local.as_ref(), admin_token).await;
    // Stop the cluster this run started, whether serving ended normally or
    // never began (a bad setting, a port in use).
    if let Some(cluster) = local.filter(LocalCluster::started_here) {
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
    }
    served
}

/// Builds the server from `env`, seeds the demo tenants, prints the examples
/// and serves until Ctrl-C or SIGTERM.
async fn serve(
    env: &impl Source,
    local: Option<&LocalCluster>,
    admin_token: String,
) -> anyhow::Result<()> {
    let settings = Settings::from_source(env)?;
    let app = Application::build(&settings).await?;
    seed_demo_tenants(app.state()).await?;
    let admin_token = settings.admin_api.as_ref().map(|_| admin_token);
    print_examples(
        app.port(),
        settings.base_domain.as_str(),
        local,
        admin_token.as_deref(),
    )?;
    app.run_until_stopped().await
}

/// Starts (or reuses) the private cluster and migrates it.
async fn start_local_database() -> anyhow::Result<LocalCluster> {
    let root = ProcessEnv.get("DEV_DATA_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.devdb")),
        PathBuf::from,
    );
    let port = match ProcessEnv.get("DEV_PG_PORT") {
        Some(raw) => raw
            .parse()
            .with_context(|| format!("DEV_PG_PORT={raw:?} is not a port"))?,
        None => DEFAULT_PG_PORT,
    };
    tracing::info!(dir = %root.display(), port, "starting the local PostgreSQL cluster");
    let cluster =
        tokio::task::spawn_blocking(move || LocalCluster::ensure_running(&root, port, &[]))
            .await??;

    let superuser = connect(cluster.config(local::SUPERUSER, "postgres")).await?;
    local::ensure_owner_role(&superuser).await?;
    local::ensure_database(&superuser, DATABASE, None).await?;
    let mut owner = connect(cluster.config(local::OWNER_ROLE, DATABASE)).await?;
    let report = migrate::run(
        &mut owner,
        &crate::config::RolePasswords::all(RUNTIME_PASSWORD),
    )
    .await?;
    tracing::info!(applied = ?report.applied, version = report.version, "local database migrated");
    Ok(cluster)
}

async fn connect(config: tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .context("could not connect to the local cluster")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Onboards the demo tenants through the same code as `POST /api/tenants`;
/// ones that already exist are left alone.
async fn seed_demo_tenants(state: &AppState) -> anyhow::Result<()> {
    for (slug, name, username, password) in DEMO_TENANTS {
        let request = OnboardingRequest {
            slug: slug.to_owned(),
            name: name.to_owned(),
            plan: None,
            owner: NewUserRequest {
                username: username.to_owned(),
                email: format!("{username}@{slug}.test"),
                password: password.to_owned(),
            },
        };
        // The service seeds them itself, as the runtime role: `system`.
        match crate::api::tenants::onboard(state, request, crate::audit::Actor::System, None).await
        {
            Ok(_) | Err(ApiError::Conflict(_)) => {}
            Err(ApiError::Unexpected(cause)) => {
                return Err(cause.context(format!("could not create demo tenant {slug}")));
            }
            Err(error) => {
                return Err(anyhow::anyhow!(
                    "could not create demo tenant {slug}: {error}"
                ));
            }
        }
    }
    Ok(())
}

fn print_examples(
    port: u16,
    base: &str,
    cluster: Option<&LocalCluster>,
    admin_token: Option<&str>,
) -> anyhow::Result<()> {
    let acme = format!("http://acme.{base}:{port}");
    let globex = format!("http://globex.{base}:{port}");
    let apex = format!("http://{base}:{port}");
    let (alice, alice_password) = (DEMO_TENANTS[0].2, DEMO_TENANTS[0].3);
    // Fresh names each run, so the examples that create things succeed every time.
    let suffix = random_hex(2)?;
    let json = "-H 'content-type: application/json'";
    let database = cluster.map_or_else(
        || "DATABASE_URL".to_owned(),
        |cluster| {
            format!(
                "local cluster in {} on port {}",
                cluster.root().display(),
                cluster.port()
            )
        },
    );
    let (operators, admin_example) = match (admin_token, cluster) {
        (Some(token), Some(cluster)) => (
            format!(
                "Operators: the /admin API takes the token {token}; the CLI, e.g.\n  \
                 ADMIN_DATABASE_URL=postgres://tenantry_admin:{RUNTIME_PASSWORD}@127.0.0.1:{}/{DATABASE} \
                 cargo run -- tenants list\n",
                cluster.port()
            ),
            format!("curl -s {apex}/v1/admin/stats -H \"authorization: Bearer {token}\"\n"),
        ),
        _ => (String::new(), String::new()),
    };
    println!(
        "\ntenantry dev is serving {apex} (database: {database})\n\
         Tenants are chosen by Host; curl resolves *.localhost to 127.0.0.1.\n\
         Demo logins: alice / alice-demo-password on acme, bob / bob-demo-password on globex.\n\
         {operators}\n\
         --- try it ---\n\
         curl -s {acme}/healthz\n\
         curl -s {acme}/v1/register {json} -d '{{\"username\":\"carol-{suffix}\",\"email\":\"carol-{suffix}@acme.test\",\"password\":\"carol-demo-password\"}}'\n\
         TOKEN=$(curl -s {acme}/v1/login {json} -d '{{\"username\":\"{alice}\",\"password\":\"{alice_password}\"}}' | sed -E 's/.*\"token\":\"([^\"]+)\".*/\\1/')\n\
         curl -s {acme}/v1/notes -H \"authorization: Bearer $TOKEN\" {json} -d '{{\"content\":\"hello from acme\"}}'\n\
         curl -s {acme}/v1/notes -H \"authorization: Bearer $TOKEN\"\n\
         curl -s {acme}/v1/me -H \"authorization: Bearer $TOKEN\"\n\
         curl -s {globex}/v1/notes -H \"authorization: Bearer $TOKEN\"  # 401: acme's token is refused on globex\n\
         curl -s {apex}/v1/tenants {json} -d '{{\"slug\":\"initech-{suffix}\",\"name\":\"Initech\",\"owner\":{{\"username\":\"peter\",\"email\":\"peter@initech.test\",\"password\":\"peter-demo-password\"}}}}'\n\
         {admin_example}\
         --- end ---\n"
    );
    Ok(())
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0_u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|error| anyhow::anyhow!("no randomness available: {error}"))?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

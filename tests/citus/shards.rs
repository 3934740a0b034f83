//! Moving tenants between shards and nodes while the service serves: a hot
//! tenant isolated to a shard of its own and moved to another worker, and a
//! node added and the shards rebalanced onto it, each under a steady load
//! of writes and reads, with no failed request and no acknowledged write
//! lost.
//!
//! Every transfer is `block_writes`: PostgreSQL refuses to replicate
//! logically into a table with forced RLS for a subscription owner that is
//! not a superuser ("cannot replicate into relation with row-level security
//! enabled"), and Citus's shard moves subscribe as such a role. Writes to
//! the moving shard group wait while it is copied; none may fail.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::helpers::{TestApp, TestTenant, spawn_app};

/// Clients writing and reading notes for some tenants until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Outcome>>,
}

/// What one client saw.
#[derive(Default)]
struct Outcome {
    requests: u64,
    failures: Vec<String>,
    /// Notes whose creation was acknowledged (201), per tenant.
    acknowledged: HashMap<Uuid, u64>,
}

impl Load {
    /// Two clients per tenant, each alternating a create and a list.
    fn start(app: &TestApp, tenants: &[TestTenant]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for tenant in tenants
            .iter()
            .flat_map(|tenant| [tenant.clone(), tenant.clone()])
        {
            let stop = Arc::clone(&stop);
            let base = format!("http://127.0.0.1:{}", app.port);
            clients.push(tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let mut outcome = Outcome::default();
                let mut n = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let created = http
                        .post(format!("{base}/api/notes"))
                        .header("host", &tenant.host)
                        .bearer_auth(&tenant.token)
                        .json(&json!({"content": format!("load {n}")}))
                        .send()
                        .await;
                    let listed = http
                        .get(format!("{base}/api/notes?limit=5"))
                        .header("host", &tenant.host)
                        .bearer_auth(&tenant.token)
                        .send()
                        .await;
                    outcome.requests += 2;
                    match created.map(|response| response.status()) {
                        Ok(StatusCode::CREATED) => {
                            *outcome.acknowledged.entry(tenant.id).or_default() += 1;
                        }
                        other => outcome
                            .failures
                            .push(format!("{}: create {other:?}", tenant.slug)),
                    }
                    match listed.map(|response| response.status()) {
                        Ok(StatusCode::OK) => {}
                        other => outcome
                            .failures
                            .push(format!("{}: list {other:?}", tenant.slug)),
                    }
                }
                outcome
            }));
        }
        Self { stop, clients }
    }

    /// Stops the clients and adds up what they saw.
    async fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Outcome::default();
        for client in self.clients {
            let outcome = client.await.unwrap();
            total.requests += outcome.requests;
            total.failures.extend(outcome.failures);
            for (tenant, notes) in outcome.acknowledged {
                *total.acknowledged.entry(tenant).or_default() += notes;
            }
        }
        total
    }
}

/// Checks `outcome`: requests were served, none failed, and every
/// acknowledged note of each tenant is in the table.
async fn assert_nothing_lost(app: &TestApp, outcome: &Outcome, before: &HashMap<Uuid, i64>) {
    assert!(
        outcome.requests > 20,
        "the load ran: {} requests",
        outcome.requests
    );
    assert!(outcome.failures.is_empty(), "{:#?}", outcome.failures);
    for (tenant, acknowledged) in &outcome.acknowledged {
        let stored = app.count("notes", *tenant).await;
        assert_eq!(
            stored - before[tenant],
            i64::try_from(*acknowledged).unwrap(),
            "every acknowledged note of {tenant} is stored"
        );
    }
}

/// Where the shard holding `tenant`'s users is: `(shard, host, port)`.
async fn placement_of(admin: &Client, tenant: Uuid) -> (i64, String, i32) {
    let row = admin
        .query_one(
            "select p.shardid, p.nodename::text, p.nodeport from pg_dist_shard_placement p
             where p.shardid = get_shard_id_for_distribution_column('users', $1::text)",
            &[&tenant.to_string()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn tenants_with_notes(app: &TestApp, slugs: &[&str]) -> Vec<TestTenant> {
    let mut tenants = Vec::new();
    for slug in slugs {
        let tenant = app.onboard(slug).await;
        for n in 0..3 {
            app.create_note(&tenant, &format!("{slug} {n}")).await;
        }
        tenants.push(tenant);
    }
    tenants
}

async fn note_counts(app: &TestApp, tenants: &[TestTenant]) -> HashMap<Uuid, i64> {
    let mut counts = HashMap::new();
    for tenant in tenants {
        counts.insert(tenant.id, app.count("notes", tenant.id).await);
    }
    counts
}

#[tokio::test]
async fn a_hot_tenant_is_isolated_to_its_own_shard_and_moved_while_served() {
    let app = spawn_app().await;
    let tenants = tenants_with_notes(&app, &["hot", "cool"]).await;
    let hot = &tenants[0];
    let before = note_counts(&app, &tenants).await;
    let load = Load::start(&app, &tenants);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let isolated: i64 = app
        .admin
        .query_one(
            "select isolate_tenant_to_new_shard('users', $1::text, 'CASCADE', shard_transfer_mode => 'block_writes')",
            &[&hot.id.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (shard, host, port) = placement_of(&app.admin, hot.id).await;
    assert_eq!(shard, isolated, "the tenant's rows are in the new shard");
    let row = app
        .admin
        .query_one(
            "select nodename::text, nodeport from pg_dist_node
             where groupid <> 0 and noderole = 'primary' and (nodename, nodeport) <> ($1, $2)
             order by nodeid limit 1",
            &[&host, &port],
        )
        .await
        .unwrap();
    let target: (String, i32) = (row.get(0), row.get(1));
    app.admin
        .execute(
            "select citus_move_shard_placement($1, $2, $3, $4, $5, shard_transfer_mode => 'block_writes')",
            &[&shard, &host, &port, &target.0, &target.1],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = load.finish().await;

    assert_nothing_lost(&app, &outcome, &before).await;
    let (moved, host, port) = placement_of(&app.admin, hot.id).await;
    assert_eq!(
        (moved, (host, port)),
        (shard, target),
        "the shard is on the other worker"
    );
    let alone: bool = app
        .admin
        .query_one(
            "select shardminvalue = shardmaxvalue from pg_dist_shard where shardid = $1",
            &[&shard],
        )
        .await
        .unwrap()
        .get(0);
    assert!(alone, "the shard covers the hot tenant's hash value only");
    // Every colocated table followed (CASCADE): the tenant still works whole.
    let page = app.get_json(&hot.host, "/api/me", &hot.token).await;
    assert_eq!(
        page["usage"]["notes"].as_i64(),
        Some(app.count("notes", hot.id).await)
    );
}

#[tokio::test]
async fn a_node_added_and_rebalanced_under_load_loses_nothing() {
    let app = spawn_app().await;
    let spare = app
        .cluster
        .backend()
        .add_spare_worker(app.cluster.superuser(), &app.dbname)
        .await;
    let tenants = tenants_with_notes(&app, &["alpha", "bravo", "charlie", "delta"]).await;
    let before = note_counts(&app, &tenants).await;
    let load = Load::start(&app, &tenants);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Two statements, two transactions: the background job that
    // citus_rebalance_wait waits for exists once citus_rebalance_start commits.
    app.admin
        .execute(
            "select citus_rebalance_start(shard_transfer_mode => 'block_writes')",
            &[],
        )
        .await
        .unwrap();
    app.admin
        .execute("select citus_rebalance_wait()", &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = load.finish().await;

    assert_nothing_lost(&app, &outcome, &before).await;
    let on_spare: i64 = app
        .admin
        .query_one(
            "select count(*) from pg_dist_shard_placement where nodename || ':' || nodeport = $1",
            &[&spare],
        )
        .await
        .unwrap()
        .get(0);
    assert!(on_spare > 0, "the rebalancer moved shards onto {spare}");
    let status: String = app
        .admin
        .query_one(
            "select state::text from citus_rebalance_status() order by job_id desc limit 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "finished");
    for tenant in &tenants {
        let page = app
            .get_json(&tenant.host, "/api/notes?limit=1", &tenant.token)
            .await;
        assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
    }
}

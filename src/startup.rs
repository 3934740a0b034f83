//! Building and running the server: shared state, the layer stack, the
//! boot-time audit, and graceful shutdown.
//!
//! [`Application::build`] binds the listener (so tests can bind port 0 and ask
//! [`Application::port`]), connects as the runtime role and refuses to go on if
//! the isolation audit fails. [`Application::run_until_stopped`] serves until
//! SIGTERM or Ctrl-C, then stops accepting, lets in-flight requests finish for
//! up to `SHUTDOWN_TIMEOUT_MS`, and closes the pool.

use std::{future::Future, net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderValue, header},
    middleware,
};
use tokio::{net::TcpListener, sync::Notify};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer,
    sensitive_headers::SetSensitiveHeadersLayer, set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};

use crate::{
    admin::Admin,
    api::{self, middleware as mw},
    auth::{jwt::JwtKeys, password::PasswordHasher},
    config::{CitusMode, Settings},
    db::{Db, audit},
    limits::Limits,
    state::{AdminApi, AppState},
    telemetry,
    tenant::resolver::TenantResolver,
};

/// How long start-up keeps retrying an unreachable database before giving up.
const DATABASE_STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A server that is bound and audited, ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    db: Db,
    header_read_timeout: Duration,
    shutdown_timeout: Duration,
}

impl Application {
    /// Connects, audits, binds. Fails (and the process exits non-zero) if the
    /// database role could bypass tenant isolation.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let db = Db::connect(&settings.database)?;
        audit_database(&db, settings.citus).await?;
        telemetry::metrics::observe_pool(db.pool(), "tenantry_app");
        let state = AppState {
            tenants: Arc::new(TenantResolver::new(
                db.pool().clone(),
                settings.base_domain.clone(),
                settings.tenant_cache_ttl,
            )),
            db: db.clone(),
            jwt: Arc::new(JwtKeys::new(&settings.jwt)?),
            passwords: Arc::new(PasswordHasher::new(settings.password_hashing)?),
            signup: Arc::new(settings.signup.clone()),
            admin: admin_api(settings).await?,
            limits: Arc::new(Limits::new(&settings.limits)),
        };
        warn_about_oversized_shares(&state.limits, settings.database.pool_size);
        spawn_sweeper(&state, settings.limits.sweep_interval);
        let (router, _) = api::router().split_for_parts();
        let router = with_layers(router.with_state(state.clone()), settings, &state.db);
        let address = SocketAddr::new(settings.host, settings.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("could not listen on {address}"))?;
        Ok(Self {
            listener,
            router,
            state,
            db,
            header_read_timeout: settings.header_read_timeout,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    /// The port actually bound (useful with `PORT=0`).
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or_default()
    }

    /// The state handlers share, for in-process callers such as `tenantry dev`.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or Ctrl-C, then drains.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then stops accepting and lets
    /// in-flight requests finish, for at most the shutdown timeout.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let draining = Arc::new(Notify::new());
        let notify = Arc::clone(&draining);
        let shutdown = async move {
            signal.await;
            tracing::info!("shutdown requested; draining in-flight requests");
            notify.notify_one();
        };
        let mut server = pin!(crate::serve::serve(
            self.listener,
            self.router,
            self.header_read_timeout,
            shutdown,
        ));
        let deadline = async {
            draining.notified().await;
            tokio::time::sleep(self.shutdown_timeout).await;
        };
        tokio::select! {
            () = &mut server => {},
            () = deadline => {
                // Requests still running: cancel their statements in the
                // database (nothing of theirs may commit after we are gone),
                // then let them answer (503) for a moment.
                let wound_down = tokio::time::timeout(WIND_DOWN, async {
                    let cancelled = self.db.cancel_in_flight().await;
                    tracing::warn!(cancelled, "drain deadline reached; cancelled the statements still running");
                    (&mut server).await;
                })
                .await;
                if wound_down.is_err() {
                    tracing::warn!("exiting with requests still in flight");
                }
            }
        }
        self.db.pool().close();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Connects as the runtime role, retrying while the database is unreachable
/// (not when it refuses us), runs the isolation audit, and checks a Citus
/// cluster's set-up (`DATABASE_CITUS`, see [`crate::db::citus`]).
async fn audit_database(db: &Db, citus: CitusMode) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    let client = loop {
        match db.pool().get().await {
            Ok(client) => break client,
            Err(error)
                if is_unreachable(&error) && started.elapsed() < DATABASE_STARTUP_DEADLINE =>
            {
                tracing::warn!(error = %error, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                return Err(error).context("could not connect to the database as the runtime role");
            }
        }
    };
    audit::check(&client).await?;
    let engine = crate::db::citus::detect(&client, citus).await?;
    tracing::info!(db.engine = %engine, "database engine: {engine}");
    Ok(())
}

/// Builds the `/admin` API's pools (when enabled) and audits the admin and
/// analytics roles like the runtime role: they too must be subject to RLS.
async fn admin_api(settings: &Settings) -> anyhow::Result<Option<Arc<AdminApi>>> {
    let Some(api) = &settings.admin_api else {
        return Ok(None);
    };
    let ops = Admin::connect(&api.ops, settings.base_domain.clone())?;
    ops.audit_roles().await?;
    Ok(Some(Arc::new(AdminApi {
        token: api.token.clone(),
        ops,
    })))
}

/// Drops idle rate-limit and pool-share state every `interval`, for as long
/// as the state is alive (it holds only weak references).
fn spawn_sweeper(state: &AppState, interval: Duration) {
    let limits = Arc::downgrade(&state.limits);
    let db = state.db.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(limits) = limits.upgrade() else {
                break;
            };
            limits.sweep();
            db.sweep_idle_shares();
            tracing::debug!(
                rate_limited_keys = limits.tracked_keys(),
                tenant_shares = db.tracked_shares(),
                "swept idle limiter state"
            );
            if db.pool().is_closed() {
                break;
            }
        }
    });
}

/// A plan share of the pool as large as the pool protects nobody; say so.
fn warn_about_oversized_shares(limits: &Limits, pool_size: usize) {
    for plan in crate::domain::Plan::ALL {
        let share = limits.plan_policy(plan).limits().max_db_connections;
        if share >= pool_size {
            tracing::warn!(
                plan = plan.as_str(),
                share,
                pool_size,
                "a plan's max_db_connections is not below DATABASE_POOL_SIZE: one tenant on it can take the whole pool"
            );
        }
    }
}

fn is_unreachable(error: &deadpool_postgres::PoolError) -> bool {
    match error {
        deadpool_postgres::PoolError::Backend(error) => error.as_db_error().is_none(),
        _ => true,
    }
}

/// The `/v1` paths, then the cross-cutting layers, outermost first: request
/// id, redaction, the request's span, its telemetry (metrics, access log,
/// `traceresponse`, the ring check), the API version headers, JSON errors, rate-limit headers, panic catching, the request deadline, body limits, and
/// `Cache-Control: no-store` (tenant responses must never be cached by a
/// shared cache keyed without the tenant).
fn with_layers(router: Router, settings: &Settings, db: &Db) -> Router {
    let layers = ServiceBuilder::new()
        // Outermost, so that every answer gets it, whichever layer made it
        // (a 413 for an announced length, the deadline's 503, a caught panic).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(middleware::from_fn(mw::request_id))
        .layer(SetSensitiveHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(TraceLayer::new_for_http().make_span_with(telemetry::http::request_span))
        .layer(middleware::from_fn_with_state(
            settings.release.ring,
            telemetry::http::observe,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(settings.release.clone()),
            api::versions::api_version,
        ))
        .layer(middleware::from_fn(mw::json_errors))
        .layer(middleware::from_fn(mw::rate_limit_headers))
        .layer(CatchPanicLayer::custom(mw::panic_response))
        .layer(middleware::from_fn_with_state(
            mw::Deadline {
                after: settings.request_timeout,
                db: db.clone(),
            },
            mw::deadline,
        ))
        .layer(RequestBodyLimitLayer::new(settings.max_body_bytes))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));
    let router = router.layer(layers);
    // `/v1/...` is routed by rewriting its path before the router sees it
    // (a layer on the router itself runs after routing).
    Router::new().fallback_service(
        ServiceBuilder::new()
            .map_request(api::versions::route_v1)
            .service(router),
    )
}

/// After the drain time, how long cancelling the statements still running
/// and sending their answers may take. The drain time (9 s by default) plus
/// this stays inside Cloud Run's 10 s between SIGTERM and SIGKILL.
const WIND_DOWN: Duration = Duration::from_millis(500);

/// Completes on SIGTERM (Cloud Run's stop signal) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

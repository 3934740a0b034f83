//! The report's Citus section: the same workloads on the Citus cluster
//! beside plain PostgreSQL, dataset by dataset (`citus.rs` measures them).

use std::fmt::Write as _;

use super::{
    citus::Cluster,
    common::{fmt_ms, median},
    load::Workload,
    report::{self, Results, label, rate, ratio, thousands, us},
};

/// "### Citus beside PostgreSQL": the cluster, start-up, loading, and per
/// dataset and workload req/s, p50 and p99 on each engine with citus ÷ postgres.
pub fn section(out: &mut String, cluster: &Cluster, postgres: &Results, citus: &Results) {
    let (place, cpu) = if cluster.is_local() {
        (
            ", on this machine",
            "CPU PostgreSQL on Citus counts the coordinator's and the workers' backends.",
        )
    } else {
        (
            "",
            "CPU PostgreSQL on Citus is not seen from here (the nodes are elsewhere).",
        )
    };
    let _ = writeln!(
        out,
        "### Citus beside PostgreSQL\n\n{}, {}{place}. Each dataset is built there too (a database on every \
         node, `tenantry migrate` as the owner, then `sql/citus/01_functions.sql`, `02_distribute.sql` and \
         `03_roles.sql`; the same rows, loaded with the same SQL) and the same server (plus `DATABASE_CITUS=on`), \
         connected to the coordinator as `tenantry_app`, gets the same clients, phases and repetitions, after the \
         PostgreSQL run of that dataset (whose database is dropped first unless `BENCH_KEEP=1`). No pgbench ceiling, \
         plan check or W6 on Citus. {cpu}\n",
        cluster.version,
        cluster.describe(),
    );
    startup(out, postgres, citus);
    loading(out, postgres, citus);
    throughput(out, postgres, citus);
    report::problems(out, citus, " (Citus)");
}

fn startup(out: &mut String, postgres: &Results, citus: &Results) {
    let ms = |results: &Results| {
        median(
            results
                .startups
                .iter()
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect(),
        )
    };
    let _ = writeln!(
        out,
        "Start-up (spawn → first 200 on `/readyz`, the Citus checks included): median **{} ms** over {} starts on \
         Citus, {} ms over {} on PostgreSQL.\n",
        fmt_ms(ms(citus)),
        citus.startups.len(),
        fmt_ms(ms(postgres)),
        postgres.startups.len()
    );
}

fn loading(out: &mut String, postgres: &Results, citus: &Results) {
    let _ = writeln!(
        out,
        "| dataset | notes | loaded in: postgres | citus |\n|---|---:|---:|---:|"
    );
    for (index, dataset) in citus.datasets.iter().enumerate() {
        let on_postgres = postgres.datasets.get(index).map_or_else(
            || "–".to_owned(),
            |d| format!("{:.1} s", d.loaded.as_secs_f64()),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {on_postgres} | {:.1} s |",
            label(&dataset.spec),
            thousands(dataset.notes.unsigned_abs()),
            dataset.loaded.as_secs_f64()
        );
    }
    let _ = writeln!(out);
}

fn throughput(out: &mut String, postgres: &Results, citus: &Results) {
    let _ = writeln!(
        out,
        "req/s: medians of repetitions; latencies in ms; CPU PostgreSQL in µs per request.\n\n\
         | dataset | workload | req/s postgres | req/s citus | citus ÷ postgres | p50 postgres | p50 citus | \
         p99 postgres | p99 citus | CPU PostgreSQL: postgres | citus | errors on citus |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (index, dataset) in citus.datasets.iter().enumerate() {
        for workload in Workload::MEASURED {
            let Some(on_citus) = citus.service(index, workload) else {
                continue;
            };
            let on_postgres = postgres.service(index, workload);
            let base = on_postgres.as_ref();
            let errors = if on_citus.errors > 0 {
                format!(
                    "{} of {} ({})",
                    on_citus.errors, on_citus.requests, on_citus.error_examples
                )
            } else {
                "0".to_owned()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {errors} |",
                label(&dataset.spec),
                workload.name(),
                rate(base.and_then(|s| s.throughput)),
                rate(on_citus.throughput),
                ratio(
                    on_citus
                        .throughput
                        .zip(base.and_then(|s| s.throughput))
                        .map(|(c, p)| c / p)
                ),
                fmt_ms(base.and_then(|s| s.p50)),
                fmt_ms(on_citus.p50),
                fmt_ms(base.and_then(|s| s.p99)),
                fmt_ms(on_citus.p99),
                us(base.and_then(|s| s.postgres_us)),
                us(on_citus.postgres_us),
            );
        }
    }
    let _ = writeln!(out);
}

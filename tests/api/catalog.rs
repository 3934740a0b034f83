//! Catalog property tests: structural facts about the migrated schema that
//! isolation depends on, read from PostgreSQL's catalog. Each check is a query
//! that lists violations; each test asserts the migrated schema has none, then
//! plants the defect in a scratch database and asserts the check catches it,
//! so every check is shown to be able to fail.
//!
//! Registry exemptions, by design: `tenant_domains` is keyed by the domain
//! itself (a domain belongs to at most one tenant), and its `registry_lookup`
//! policy lets only the NOLOGIN `tenantry_registry` role read it, for SELECT.

use tokio_postgres::Client;

use crate::helpers::{TestCluster, cluster, connect};

/// Tables with a `tenant_id` column (SQL fragment, alias `c`).
pub(crate) const TENANT_TABLE: &str = "c.relkind in ('r', 'p')
    and c.relnamespace not in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    and exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)";

/// RLS enabled and forced, and a permissive policy for every command whose
/// USING and WITH CHECK are both the tenant comparison; no other policy except
/// the registry's documented exemption. Not even a restrictive one: Citus
/// copies policies to the shards without AS RESTRICTIVE, where it would be
/// permissive and widen what the tenant policy allows.
fn rls_check() -> String {
    let predicate = tenantry::db::audit::TENANT_PREDICATE.replace('\'', "''");
    format!(
        "select c.oid::regclass::text || ' has RLS disabled' from pg_class c where {TENANT_TABLE} and not c.relrowsecurity
         union all
         select c.oid::regclass::text || ' does not force RLS' from pg_class c where {TENANT_TABLE} and not c.relforcerowsecurity
         union all
         select c.oid::regclass::text || ' has no policy for every command with USING and WITH CHECK on app.tenant_id'
         from pg_class c where {TENANT_TABLE} and not exists (
             select 1 from pg_policy p where p.polrelid = c.oid and p.polcmd = '*' and p.polpermissive
               and pg_get_expr(p.polqual, p.polrelid) = '{predicate}'
               and pg_get_expr(p.polwithcheck, p.polrelid) = '{predicate}')
         union all
         select 'policy ' || p.polname || ' on ' || c.oid::regclass::text || ' is not the tenant comparison'
         from pg_policy p join pg_class c on c.oid = p.polrelid
         where {TENANT_TABLE}
           and not (coalesce(pg_get_expr(p.polqual, p.polrelid), '') in ('', '{predicate}')
                    and coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') in ('', '{predicate}'))
           and not (c.relname = 'tenant_domains' and p.polname = 'registry_lookup' and p.polcmd = 'r'
                    and p.polroles = array['tenantry_registry'::regrole::oid])"
    )
}

/// The role `$1`: not superuser, no BYPASSRLS, owns nothing, a member of no
/// role (privileges it could SET ROLE to are otherwise invisible to
/// `has_table_privilege`, as the runtime role is NOINHERIT), no TRUNCATE,
/// REFERENCES or TRIGGER on any relation, cannot create in the database or any
/// schema.
fn role_check() -> String {
    "select $1::text || ' is a superuser or has BYPASSRLS' from pg_roles r where r.rolname = $1::text and (r.rolsuper or r.rolbypassrls)
     union all
     select $1::text || ' owns ' || c.oid::regclass::text from pg_class c where c.relowner = (select oid from pg_roles where rolname = $1::text)
     union all
     select $1::text || ' is a member of ' || g.rolname from pg_auth_members m
     join pg_roles g on g.oid = m.roleid join pg_roles r on r.oid = m.member where r.rolname = $1::text
     union all
     select $1::text || ' has ' || priv || ' on ' || c.oid::regclass::text
     from pg_class c cross join unnest(array['TRUNCATE', 'REFERENCES', 'TRIGGER']) priv
     where c.relkind in ('r', 'p', 'v', 'm', 'f')
       and c.relnamespace not in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
       and has_table_privilege($1::text, c.oid, priv)
     union all
     select $1::text || ' can create objects in schema ' || n.nspname from pg_namespace n
     where n.nspname not like 'pg\\_%' and n.nspname <> 'information_schema' and has_schema_privilege($1::text, n.oid, 'CREATE')
     union all
     select $1::text || ' can create schemas' where has_database_privilege($1::text, current_database(), 'CREATE')"
        .to_owned()
}

/// Every primary key, unique constraint and unique index of a tenant table
/// leads with tenant_id; every foreign key between tenant tables includes it.
fn keys_check() -> String {
    format!(
        "select i.indexrelid::regclass::text || ' is unique but does not lead with tenant_id'
         from pg_index i join pg_class c on c.oid = i.indrelid
         join pg_attribute ta on ta.attrelid = c.oid and ta.attname = 'tenant_id'
         where {TENANT_TABLE} and i.indisunique and i.indkey[0] <> ta.attnum and c.relname <> 'tenant_domains'
         union all
         select con.conname || ' links ' || con.conrelid::regclass::text || ' to ' || con.confrelid::regclass::text || ' without tenant_id'
         from pg_constraint con
         join pg_class c on c.oid = con.conrelid
         join pg_attribute a on a.attrelid = con.conrelid and a.attname = 'tenant_id'
         join pg_attribute b on b.attrelid = con.confrelid and b.attname = 'tenant_id'
         where con.contype = 'f' and {TENANT_TABLE}
           and not exists (select 1 from unnest(con.conkey, con.confkey) k(local, remote)
                           where k.local = a.attnum and k.remote = b.attnum)"
    )
}

/// Nothing readable by the runtime role escapes RLS: views run as the caller;
/// materialized views and foreign tables (no RLS) are not readable.
const UNGUARDED_CHECK: &str = "
    select c.oid::regclass::text || ' (' || c.relkind::text || ') is readable by tenantry_app without RLS'
    from pg_class c
    where c.relkind in ('v', 'm', 'f')
      and c.relnamespace not in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
      and has_any_column_privilege('tenantry_app', c.oid, 'SELECT')
      and not (c.relkind = 'v' and coalesce(c.reloptions @> array['security_invoker=true'], false))";

/// Every SECURITY DEFINER function pins search_path, is on the allowlist, and
/// is not executable by PUBLIC; no user function claims LEAKPROOF.
fn functions_check() -> String {
    let allowlist = tenantry::db::audit::DEFINER_ALLOWLIST
        .iter()
        .map(|f| format!("'{f}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "with f as (
             select p.oid, p.prosecdef, p.proleakproof, p.proconfig, p.proacl,
                    n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')' as name
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace
             where n.nspname not in ('pg_catalog', 'information_schema'))
         select name || ' is SECURITY DEFINER but not on the allowlist' from f where prosecdef and name not in ({allowlist})
         union all
         select name || ' does not pin search_path' from f
         where prosecdef and not coalesce(array_to_string(proconfig, ' ') like '%search_path=%', false)
         union all
         select name || ' is executable by PUBLIC' from f
         where prosecdef and (proacl is null or exists (select 1 from aclexplode(proacl) e where e.grantee = 0 and e.privilege_type = 'EXECUTE'))
         union all
         select name || ' is LEAKPROOF' from f where proleakproof"
    )
}

/// No tenant table draws values from a sequence (serial, identity or nextval
/// default): a shared counter leaks how much other tenants insert.
fn sequences_check() -> String {
    format!(
        "select c.oid::regclass::text || '.' || a.attname || ' draws from a sequence'
         from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
         left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
         where {TENANT_TABLE}
           and (a.attidentity <> '' or pg_get_expr(d.adbin, d.adrelid) like '%nextval(%')"
    )
}

async fn violations(client: &Client, check: &str, role: Option<&str>) -> Vec<String> {
    let rows = match role {
        Some(role) => client.query(check, &[&role]).await,
        None => client.query(check, &[]).await,
    };
    rows.unwrap_or_else(|error| {
        panic!(
            "check failed to run: {:?}\n{check}",
            error.as_db_error().map(|e| e.message())
        )
    })
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// The migrated schema passes `check`; each plant makes it report `expected`.
pub(crate) async fn holds_and_catches(
    cluster: &'static TestCluster,
    check: &str,
    role: Option<&str>,
    plants: &[(&str, &str)],
) {
    let clean = cluster.migrated_database().await;
    let admin = connect(&cluster.superuser_on(&clean)).await;
    assert_eq!(
        violations(&admin, check, role).await,
        Vec::<String>::new(),
        "the migrated schema violates the check"
    );
    for (plant, expected) in plants {
        let scratch = cluster.migrated_database().await;
        let admin = connect(&cluster.superuser_on(&scratch)).await;
        admin
            .batch_execute(plant)
            .await
            .unwrap_or_else(|error| panic!("planting {plant:?}: {error}"));
        let found = violations(&admin, check, role).await;
        assert!(
            found.iter().any(|v| v.contains(expected)),
            "planted {plant:?}, expected {expected:?}, found {found:?}"
        );
    }
}

#[tokio::test]
async fn every_tenant_table_has_forced_rls_with_the_tenant_policy_for_every_command() {
    let plants = [
        ("alter table notes disable row level security", "notes has RLS disabled"),
        ("alter table users no force row level security", "users does not force RLS"),
        (
            "drop policy tenant_isolation on notes;
             create policy read_only on notes for select using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)",
            "notes has no policy for every command",
        ),
        (
            "alter policy tenant_isolation on notes with check (true)",
            "notes has no policy for every command",
        ),
        ("create policy sneaky on users for select using (true)", "policy sneaky on users is not the tenant comparison"),
        ("create table audit_trail (tenant_id uuid, what text)", "audit_trail has RLS disabled"),
    ];
    holds_and_catches(cluster().await, &rls_check(), None, &plants).await;
}

#[tokio::test]
async fn the_runtime_role_has_no_way_around_rls() {
    let cluster = cluster().await;
    holds_and_catches(
        cluster,
        &role_check(),
        Some("tenantry_app"),
        &[
            (
                "grant truncate on notes to tenantry_app",
                "tenantry_app has TRUNCATE on notes",
            ),
            (
                "grant references on users to tenantry_app",
                "tenantry_app has REFERENCES on users",
            ),
            (
                "grant trigger on users to tenantry_app",
                "tenantry_app has TRIGGER on users",
            ),
            (
                "grant create on schema public to tenantry_app",
                "tenantry_app can create objects in schema public",
            ),
            (
                "alter table notes owner to tenantry_app",
                "tenantry_app owns notes",
            ),
            (
                "grant truncate on tenants to tenantry_app",
                "tenantry_app has TRUNCATE on tenants",
            ),
        ],
    )
    .await;
    // Role attributes are cluster-wide: plant them on a probe role of our own.
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let (probe, bypass) = (format!("probe_{suffix}"), format!("probe_bypass_{suffix}"));
    let dbname = cluster.migrated_database().await;
    let admin = connect(&cluster.superuser_on(&dbname)).await;
    admin
        .batch_execute(&format!(
            "create role {bypass} nologin bypassrls; create role {probe} nologin"
        ))
        .await
        .unwrap();
    let check = role_check();
    assert!(violations(&admin, &check, Some(&probe)).await.is_empty());
    admin
        .batch_execute(&format!("grant {bypass} to {probe}"))
        .await
        .unwrap();
    let through_membership = violations(&admin, &check, Some(&probe)).await;
    admin
        .batch_execute(&format!(
            "revoke {bypass} from {probe}; alter role {probe} bypassrls"
        ))
        .await
        .unwrap();
    let direct = violations(&admin, &check, Some(&probe)).await;
    // A NOINHERIT role's privileges through membership are invisible to
    // has_table_privilege; the membership itself must be reported.
    let truncater = format!("probe_truncate_{suffix}");
    admin
        .batch_execute(&format!(
            "alter role {probe} nobypassrls noinherit; create role {truncater} nologin;
             grant truncate on notes to {truncater}; grant {truncater} to {probe}"
        ))
        .await
        .unwrap();
    let hidden_privilege = violations(&admin, &check, Some(&probe)).await;
    admin
        .batch_execute(&format!(
            "revoke {truncater} from {probe}; grant tenantry_owner to {probe}"
        ))
        .await
        .unwrap();
    let owner_membership = violations(&admin, &check, Some(&probe)).await;
    admin
        .batch_execute(&format!("drop owned by {truncater}; drop role {probe}; drop role {truncater}; drop role {bypass}"))
        .await
        .unwrap();
    assert!(
        through_membership
            .iter()
            .any(|v| v.contains(&format!("is a member of {bypass}"))),
        "{through_membership:?}"
    );
    assert!(
        direct
            .iter()
            .any(|v| v.contains("is a superuser or has BYPASSRLS")),
        "{direct:?}"
    );
    assert!(
        hidden_privilege
            .iter()
            .any(|v| v.contains(&format!("is a member of {truncater}"))),
        "{hidden_privilege:?}"
    );
    assert!(
        owner_membership
            .iter()
            .any(|v| v.contains("is a member of tenantry_owner")),
        "{owner_membership:?}"
    );
}

#[tokio::test]
async fn keys_and_foreign_keys_of_tenant_tables_lead_with_tenant_id() {
    let plants = [
        ("create unique index users_email_global on users (lower(email))", "users_email_global is unique but does not lead"),
        ("alter table notes add constraint notes_content_key unique (content, tenant_id)", "notes_content_key is unique but does not lead"),
        (
            "create table attachments (tenant_id uuid not null, id uuid primary key, note_id uuid)",
            "attachments_pkey is unique but does not lead",
        ),
        (
            "create unique index notes_id_key on notes (id);
             create table attachments (tenant_id uuid not null, id uuid, note_id uuid, primary key (tenant_id, id),
                 constraint attachments_note_fkey foreign key (note_id) references notes (id))",
            "attachments_note_fkey links attachments to notes without tenant_id",
        ),
    ];
    holds_and_catches(cluster().await, &keys_check(), None, &plants).await;
}

#[tokio::test]
async fn nothing_readable_by_the_runtime_role_escapes_rls() {
    let plants = [
        (
            "create view all_notes as select * from notes; grant select on all_notes to tenantry_app",
            "all_notes (v) is readable",
        ),
        (
            "create materialized view note_counts as select tenant_id, count(*) from notes group by 1; grant select on note_counts to tenantry_app",
            "note_counts (m) is readable",
        ),
        (
            "create view some_columns as select * from notes;
             grant select (tenant_id, content) on some_columns to tenantry_app",
            "some_columns (v) is readable",
        ),
    ];
    holds_and_catches(cluster().await, UNGUARDED_CHECK, None, &plants).await;
}

#[tokio::test]
async fn security_definer_functions_are_allowlisted_pinned_and_not_public() {
    let plants = [
        (
            "create function count_notes() returns bigint language sql security definer set search_path = '' as 'select count(*) from public.notes'",
            "public.count_notes() is SECURITY DEFINER but not on the allowlist",
        ),
        (
            "alter function tenant_by_domain(text) reset search_path",
            "public.tenant_by_domain(text) does not pin search_path",
        ),
        (
            "grant execute on function tenant_by_slug(text) to public",
            "public.tenant_by_slug(text) is executable by PUBLIC",
        ),
        (
            "create function same(a uuid, b uuid) returns boolean language sql immutable leakproof as 'select a = b'",
            "public.same(uuid, uuid) is LEAKPROOF",
        ),
    ];
    holds_and_catches(cluster().await, &functions_check(), None, &plants).await;
}

#[tokio::test]
async fn no_tenant_table_draws_ids_from_a_shared_sequence() {
    let plants = [
        (
            "alter table notes add column number bigserial",
            "notes.number draws from a sequence",
        ),
        (
            "alter table users add column seq integer generated always as identity",
            "users.seq draws from a sequence",
        ),
    ];
    holds_and_catches(cluster().await, &sequences_check(), None, &plants).await;
}

/// Offboarding and backups cover every tenant table: each is purged (children
/// before parents) and exported (parents before children), and every uuid
/// column but `tenant_id` is remapped when importing as a new tenant.
fn lifecycle_check() -> String {
    use tenantry::admin::{purge::PURGE_ORDER, transfer};
    let array = |names: &[&str]| format!("array['{}']::text[]", names.join("','"));
    let (purged, exported, remapped) = (
        array(PURGE_ORDER),
        array(&[transfer::EXPORT_ORDER, transfer::DERIVED_TABLES].concat()),
        array(transfer::REMAPPED_COLUMNS),
    );
    format!(
        "select c.relname || ' is not purged' from pg_class c where {TENANT_TABLE} and c.relname <> all({purged})
         union all
         select c.relname || ' is not exported' from pg_class c where {TENANT_TABLE} and c.relname <> all({exported})
         union all
         select c.relname || '.' || a.attname || ' is a uuid that an import as a new tenant does not remap'
         from pg_class c join pg_attribute a on a.attrelid = c.oid
         where {TENANT_TABLE} and a.attnum > 0 and not a.attisdropped
           and a.atttypid = 'uuid'::regtype and a.attname <> 'tenant_id' and a.attname <> all({remapped})
         union all
         select k.conrelid::regclass::text || ' is purged after ' || k.confrelid::regclass::text || ', which it references'
         from pg_constraint k
         where k.contype = 'f'
           and array_position({purged}, k.conrelid::regclass::text) > array_position({purged}, k.confrelid::regclass::text)
         union all
         select k.conrelid::regclass::text || ' is exported before ' || k.confrelid::regclass::text || ', which it references'
         from pg_constraint k
         where k.contype = 'f'
           and array_position({exported}, k.conrelid::regclass::text) < array_position({exported}, k.confrelid::regclass::text)"
    )
}

#[tokio::test]
async fn every_tenant_table_is_purged_exported_and_remapped() {
    let plants = [
        (
            "create table widgets (tenant_id uuid not null, id uuid not null)",
            "widgets is not purged",
        ),
        (
            "create table gadgets (tenant_id uuid not null, id uuid not null)",
            "gadgets is not exported",
        ),
        (
            "alter table notes add column parent_id uuid",
            "notes.parent_id is a uuid that an import as a new tenant does not remap",
        ),
        (
            "alter table users add constraint users_last_note_fkey foreign key (tenant_id, id) references notes (tenant_id, id)",
            "users is purged after notes",
        ),
    ];
    holds_and_catches(cluster().await, &lifecycle_check(), None, &plants).await;
}

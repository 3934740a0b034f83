-- Privileges, re-applied in full at the end of every `tenantry migrate` (in the
-- same transaction), so this file is the single statement of who may do what.
-- Revoke everything, then grant exactly what is listed: a table added by a later
-- migration is invisible to every role until it is granted here.

-- Every table, view, sequence and function of the schema, except those of
-- an extension (pg_depend 'e'): those are the extension's to grant (Citus
-- keeps views such as citus_tables in public), and revoking on them only
-- warns that nothing could be revoked.
do $$
declare
    object record;
begin
    for object in
        select case when c.relkind = 'S' then 'sequence' else 'table' end as kind, c.oid::regclass::text as name
        from pg_catalog.pg_class c
        where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
          and not exists (select from pg_catalog.pg_depend d
                          where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')
        union all
        select case when p.prokind = 'p' then 'procedure' else 'function' end, p.oid::regprocedure::text
        from pg_catalog.pg_proc p
        where p.pronamespace = 'public'::regnamespace and p.prokind in ('f', 'p', 'w')
          and not exists (select from pg_catalog.pg_depend d
                          where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
    loop
        execute pg_catalog.format(
            'revoke all on %s %s from tenantry_app, tenantry_registry, tenantry_admin, tenantry_analytics, tenantry_usage',
            object.kind, object.name);
    end loop;
end
$$;
revoke create on schema public
    from tenantry_app, tenantry_registry, tenantry_admin, tenantry_analytics, tenantry_usage;
grant usage on schema public
    to tenantry_app, tenantry_registry, tenantry_admin, tenantry_analytics, tenantry_usage;
-- No temporary objects for anyone but the database's owner: a temporary
-- function and trigger would let a role fire its own SQL from inside a
-- trigger, and so past the guard triggers of V6 (PUBLIC holds TEMPORARY on
-- every new database by default).
do $$
begin
    execute pg_catalog.format('revoke temporary on database %I from public', pg_catalog.current_database());
end
$$;

-- Runtime role: plain DML on tenant tables (RLS decides which rows), and
-- only what the service does. No TRUNCATE, REFERENCES or TRIGGER: TRUNCATE
-- ignores RLS entirely. No UPDATE on users: the service never changes a
-- user, so a runtime credential cannot promote one to owner. The audit
-- trail is append-only for it: insert and read, never update or delete.
grant select, insert, delete on users to tenantry_app;
grant select, insert, update, delete on notes to tenantry_app;
grant select, insert on audit_events to tenantry_app;
-- Usage counters are written only by the count_tenant_rows() trigger, which
-- runs as the role that inserted or deleted the counted rows; a guard
-- trigger (V6) refuses any write to them from outside another trigger.
grant select, insert, update on usage_counters to tenantry_app;
-- Lets the service check at boot that the schema is migrated far enough.
grant select on schema_migrations to tenantry_app;
-- The pre-tenant path (host -> tenant, sign-up) and the tenant's status for
-- every tenant transaction.
grant execute on function tenant_by_slug(text), tenant_by_domain(text),
    tenant_state(uuid),
    bind_tenant(uuid, integer, bigint, bigint, uuid),
    bind_request(uuid, integer, bigint, bigint, uuid, text),
    signup_tenant(uuid, text, text, uuid, text, text, text, text, text, uuid[]) to tenantry_app;

-- Registry role: what the SECURITY DEFINER functions it owns need, nothing more.
-- Onboarding (onboard_tenant, V5) writes the new tenant's first rows, under
-- RLS in a transaction bound to that tenant; the counting trigger it fires
-- runs as this role too.
grant select, insert on tenants to tenantry_registry;
grant select, insert on tenant_domains to tenantry_registry;
grant select, insert on users, audit_events to tenantry_registry;
grant select, insert, update on usage_counters to tenantry_registry;
-- signup_tenant calls onboard_tenant; the revoke above takes even an
-- owner's EXECUTE.
grant execute on function reserved_slugs(),
    onboard_tenant(uuid, text, text, text, text, text, uuid, text, text, text, text, text, text, text, uuid[])
    to tenantry_registry;

-- Admin role: the registry, and tenant tables under RLS (a transaction bound to
-- one tenant at a time), including deleting audit events when purging.
grant select, insert, update, delete on tenants, tenant_domains to tenantry_admin;
grant select, insert, update, delete on users, notes, audit_events, usage_counters to tenantry_admin;
grant select, insert on platform_audit_events to tenantry_admin;
grant select on schema_migrations to tenantry_admin;
-- Backfills run as the admin role and record where they stand (V8).
grant select, insert, update, delete on backfill_progress to tenantry_admin;
-- Tenant transactions read the tenant's status as they bind (see src/db/mod.rs).
grant execute on function tenant_state(uuid),
    bind_tenant(uuid, integer, bigint, bigint, uuid),
    bind_request(uuid, integer, bigint, bigint, uuid, text),
    onboard_tenant(uuid, text, text, text, text, text, uuid, text, text, text, text, text, text, text, uuid[])
    to tenantry_admin;

-- Analytics role: one function, which returns counts and records the call,
-- and the schema version its start-up audit checks.
grant execute on function tenant_usage(text, text) to tenantry_analytics;
grant select on schema_migrations to tenantry_analytics;

-- Usage role: what tenant_usage() reads (under RLS) and the record it writes.
grant select on tenants, users, notes, audit_events to tenantry_usage;
grant insert on platform_audit_events to tenantry_usage;

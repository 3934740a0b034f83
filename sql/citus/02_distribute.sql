-- Citus, step 2 of 2: distribute the schema. Run on the coordinator as a
-- superuser (or the managed service's admin role, e.g. `citus` on Azure
-- Cosmos DB for PostgreSQL), after `tenantry migrate` and 01_functions.sql,
-- statement by statement (psql -v ON_ERROR_STOP=1 -f, not wrapped in one
-- transaction: create_distributed_table of a table with a foreign key to a
-- reference table cannot share a transaction with other distributed work).
-- Idempotent: a table that is already distributed is left as it is, so the
-- script is run again after every migrate. See docs/CITUS.md.
--
-- Every table of sql/migrations is classified here, once:
--
--   reference tables (a full copy on every node, written with two-phase
--   commit): the tenant registry, read before a tenant is known and joined
--   by every node.
--       tenants, tenant_domains
--   tenant tables, distributed by tenant_id and colocated with users: a
--   tenant's rows of every table live in the same shard group on the same
--   node, so a tenant transaction is routed to one node, foreign keys
--   between them hold (they all include tenant_id), and the counting
--   triggers reach the tenant's counter shard locally.
--       users, notes, audit_events, usage_counters
--   local tables (coordinator only): operator and migration bookkeeping,
--   never touched by a tenant transaction on a worker.
--       platform_audit_events, schema_migrations
--
-- tests/api/citus.rs checks that every table of a freshly migrated database
-- appears here exactly once, in the class its columns call for, so a new
-- tenant table without a line below fails CI.

-- The tables have the statement-level counting triggers (V3, replaced by
-- 01_functions.sql); Citus refuses to distribute tables with triggers
-- otherwise (commands/create_distributed_table.c, EnsureRelationHasNoTriggers).
set citus.enable_unsafe_triggers = on;

-- Helpers for this session only.
-- "Already done" means already of the right kind: Citus turns a local table
-- that references a reference table into a Citus local table (partmethod
-- 'n', replication 's'), which must not pass for distributed or reference.
create or replace function pg_temp.reference_table(p_table regclass) returns void
language plpgsql as $$
begin
    if not exists (select 1 from pg_dist_partition
                   where logicalrelid = p_table and partmethod = 'n' and repmodel = 't') then
        perform create_reference_table(p_table);
    end if;
end
$$;

create or replace function pg_temp.tenant_table(p_table regclass, p_colocate_with text) returns void
language plpgsql as $$
begin
    if not exists (select 1 from pg_dist_partition
                   where logicalrelid = p_table and partmethod = 'h') then
        perform create_distributed_table(p_table, 'tenant_id', colocate_with => p_colocate_with);
    end if;
end
$$;

create or replace function pg_temp.local_table(p_table regclass) returns void
language plpgsql as $$
begin
    if exists (select 1 from pg_dist_partition where logicalrelid = p_table) then
        raise exception '% should stay a local table of the coordinator', p_table;
    end if;
end
$$;

-- Reference tables first: distributed tables reference them.
select pg_temp.reference_table('tenants');
select pg_temp.reference_table('tenant_domains');

-- users anchors the colocation group; every other tenant table joins it.
select pg_temp.tenant_table('users', 'default');
select pg_temp.tenant_table('notes', 'users');
select pg_temp.tenant_table('audit_events', 'users');
select pg_temp.tenant_table('usage_counters', 'users');

select pg_temp.local_table('platform_audit_events');
select pg_temp.local_table('schema_migrations');

-- Tenant transactions bind app.tenant_id (and the quotas) with SET LOCAL in
-- bind_tenant(); Citus forwards SET LOCAL to the workers only when this is
-- 'local' (the default, 'none', forwards nothing, and the RLS policies on
-- the shards would see no tenant: every query would find no rows). Set for
-- every role that binds tenant transactions or calls tenant_usage().
-- tenantry serve refuses to start on Citus without it (src/db/citus.rs).
-- In this database only: the roles are cluster-wide. The setting matters on
-- the coordinator, which decides what to forward.
do $$
declare
    role_name text;
begin
    foreach role_name in array array['tenantry_app', 'tenantry_admin', 'tenantry_analytics'] loop
        execute format('alter role %I in database %I set citus.propagate_set_commands = %L',
                       role_name, current_database(), 'local');
    end loop;
end
$$;

-- The pool plans every statement with its parameters
-- (plan_cache_mode=force_custom_plan, src/db/mod.rs), which is also what
-- lets Citus prune to the tenant's shard at planning time; nothing to set.

-- Check what Citus did, on every shard: RLS enabled and forced with the
-- tenant policy, and the counting triggers present. Citus copies policies
-- (commands/policy.c) and, with enable_unsafe_triggers, triggers to the
-- shards; this makes sure of it rather than assume it.
do $$
declare
    t text;
    bad text;
begin
    foreach t in array array['users', 'notes', 'audit_events', 'usage_counters'] loop
        select string_agg(r.shardid::text, ', ') into bad
        from run_command_on_shards(t, $cmd$
            select c.relrowsecurity and c.relforcerowsecurity
                   and exists (select 1 from pg_policy p where p.polrelid = c.oid and p.polname = 'tenant_isolation')
            from pg_class c where c.oid = '%s'::regclass
        $cmd$) r
        where not r.success or r.result not in ('t', 'true');
        if bad is not null then
            raise exception 'shards % of % lack forced RLS or the tenant_isolation policy', bad, t;
        end if;
    end loop;
    foreach t in array array['users', 'notes'] loop
        select string_agg(r.shardid::text, ', ') into bad
        from run_command_on_shards(t, $cmd$
            select count(*) from pg_trigger where tgrelid = '%s'::regclass and tgname like '%%counted_on%%'
        $cmd$) r
        where not r.success or r.result <> '2';
        if bad is not null then
            raise exception 'shards % of % lack the usage counting triggers', bad, t;
        end if;
    end loop;
end
$$;

-- Citus, step 2 of 3: distribute the schema. Run on the coordinator as a
-- superuser (or the managed service's admin role, e.g. `citus` on Azure
-- Cosmos DB for PostgreSQL), after `tenantry migrate` and 01_functions.sql:
--     psql -v ON_ERROR_STOP=1 -f sql/citus/01_functions.sql -f sql/citus/02_distribute.sql
-- The tables are placed in one transaction (all or nothing; see
-- place_tables below). Idempotent: tables already of their kind are left as
-- they are, so the script is run again after every migrate. See docs/CITUS.md.
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
--       platform_audit_events, schema_migrations, backfill_progress
--
-- tests/api/citus.rs checks that every table of a freshly migrated database
-- appears here exactly once, in the class its columns call for, so a new
-- tenant table without a line below fails CI.

-- The tables have the statement-level counting triggers (V3, replaced by
-- 01_functions.sql); Citus refuses to distribute tables with triggers
-- otherwise (commands/create_distributed_table.c, EnsureRelationHasNoTriggers).
set citus.enable_unsafe_triggers = on;

-- The plan: one line per table, recorded by the helpers below (this
-- session only, so there is nothing for Citus to propagate to the
-- workers), then carried out in one transaction by place_tables().
set citus.enable_ddl_propagation = off;
create temp table placement (
    position serial primary key,
    -- A name, not an oid: Citus gives a table a new oid when it turns a
    -- Citus local table back into a plain one.
    tbl text not null unique,
    kind text not null check (kind in ('reference', 'tenant', 'local')),
    colocate_with text
);
create or replace function pg_temp.reference_table(p_table regclass) returns void
language sql as $$ insert into pg_temp.placement (tbl, kind) values (p_table::text, 'reference') $$;
create or replace function pg_temp.tenant_table(p_table regclass, p_colocate_with text) returns void
language sql as $$
    insert into pg_temp.placement (tbl, kind, colocate_with) values (p_table::text, 'tenant', p_colocate_with)
$$;
-- A local table asks nothing of Citus, and a schema older than the
-- migration that adds one (backfill_progress, V8: a cluster distributed
-- before it) does not have it yet: a name that is not there is left out.
create or replace function pg_temp.local_table(p_table text) returns void
language sql as $$
    insert into pg_temp.placement (tbl, kind)
    select pg_catalog.to_regclass(p_table)::text, 'local'
    where pg_catalog.to_regclass(p_table) is not null
$$;

-- Whether a table already is of its kind. Citus turns a local table that
-- references a reference table into a Citus local table (partmethod 'n',
-- replication 's'), which must not pass for distributed or reference.
create or replace function pg_temp.placed(p_table regclass, p_kind text) returns boolean
language sql stable as $$
    select case p_kind
        when 'reference' then exists (
            select 1 from pg_dist_partition p
            where p.logicalrelid = p_table and p.partmethod = 'n' and p.repmodel = 't')
        when 'tenant' then exists (
            select 1 from pg_dist_partition p
            where p.logicalrelid = p_table and p.partmethod = 'h'
              and pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) = 'tenant_id')
        else not exists (select 1 from pg_dist_partition p where p.logicalrelid = p_table)
    end
$$;

-- Places every table of the plan that is not yet of its kind, in one
-- transaction: all of them or, on any error, none (the foreign keys
-- included). Why the foreign keys go and come back: making `tenants` a
-- reference table turns every local table referencing it into a Citus
-- local table, and a Citus local table referencing a table being
-- distributed (notes -> users) makes create_distributed_table fail
-- ("foreign keys from reference tables and local tables to distributed
-- tables are not supported"). Without foreign keys each table is placed
-- alone; then they are re-created as they were (pg_get_constraintdef), now
-- between distributed tables (with tenant_id: colocated) and from
-- distributed to reference tables, which Citus supports. A migration that
-- adds a table is placed the same way on the next run. Nothing to do: no
-- foreign key is touched, so the script is cheap to run after every
-- migrate.
create or replace function pg_temp.place_tables() returns text
language plpgsql as $$
declare
    line record;
    fk record;
    placed text[] := '{}';
begin
    for line in select * from pg_temp.placement where kind = 'local' and not pg_temp.placed(tbl::regclass, kind) loop
        raise exception '% should stay a local table of the coordinator', line.tbl;
    end loop;
    if not exists (select 1 from pg_temp.placement where not pg_temp.placed(tbl::regclass, kind)) then
        return 'every table is already placed';
    end if;
    create temp table saved_foreign_keys on commit drop as
        select c.conrelid::regclass::text as tbl, c.conname::text as name,
               pg_catalog.pg_get_constraintdef(c.oid) as definition
        from pg_constraint c
        where c.contype = 'f' and c.conparentid = 0
          and (c.conrelid in (select tbl::regclass from pg_temp.placement)
               or c.confrelid in (select tbl::regclass from pg_temp.placement));
    for fk in select * from saved_foreign_keys loop
        execute pg_catalog.format('alter table %s drop constraint %I', fk.tbl, fk.name);
    end loop;
    for line in select * from pg_temp.placement where kind <> 'local' order by position loop
        continue when pg_temp.placed(line.tbl::regclass, line.kind);
        -- A Citus local table made by hand (not by a foreign key, which
        -- Citus undoes once the key is gone) goes back to a plain table first.
        if exists (select 1 from pg_dist_partition where logicalrelid = line.tbl::regclass) then
            perform undistribute_table(line.tbl::regclass);
        end if;
        if line.kind = 'reference' then
            perform create_reference_table(line.tbl::regclass);
        else
            perform create_distributed_table(line.tbl::regclass, 'tenant_id', colocate_with => line.colocate_with);
        end if;
        placed := placed || line.tbl;
    end loop;
    for fk in select * from saved_foreign_keys loop
        execute pg_catalog.format('alter table %s add constraint %I %s', fk.tbl, fk.name, fk.definition);
    end loop;
    return 'placed: ' || pg_catalog.array_to_string(placed, ', ');
end
$$;
reset citus.enable_ddl_propagation;

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
select pg_temp.local_table('backfill_progress');

-- One connection per node for the whole transaction: Citus requires it
-- when reference tables and foreign keys to them change together.
begin;
set local citus.multi_shard_modify_mode to 'sequential';
select pg_temp.place_tables();
commit;

-- Nothing to set for routing: every request-path statement names its
-- tenant (`where tenant_id = $1`), and Citus sends it to the tenant's shard
-- whether PostgreSQL plans it with its parameters (at planning time) or
-- generically (pruned when it runs: deferred pruning). The pool leaves
-- plan_cache_mode at its default, so both happen (src/db/mod.rs); the
-- cluster target's routing test checks the generic plans.

-- Check what Citus did, on every shard of every tenant table: RLS enabled
-- and forced with the tenant policy, and the same counting triggers as the
-- table itself. Citus copies policies (commands/policy.c) and, with
-- enable_unsafe_triggers, triggers to the shards; this makes sure of it
-- rather than assume it.
do $$
declare
    t text;
    triggers bigint;
    bad text;
begin
    for t in select tbl from pg_temp.placement where kind = 'tenant' order by position loop
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
        select count(*) into triggers from pg_trigger where tgrelid = t::regclass and tgname like '%counted_on%';
        select string_agg(r.shardid::text, ', ') into bad
        from run_command_on_shards(t, $cmd$
            select count(*) from pg_trigger where tgrelid = '%s'::regclass and tgname like '%%counted_on%%'
        $cmd$) r
        where not r.success or r.result <> triggers::text;
        if bad is not null then
            raise exception 'shards % of % lack the usage counting triggers', bad, t;
        end if;
    end loop;
end
$$;

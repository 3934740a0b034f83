-- Citus, step 1 of 3: the functions and triggers whose behaviour must differ
-- on a Citus cluster. Applied on the coordinator, after `tenantry migrate`,
-- then 02_distribute.sql. Run both again after every migrate: a migration
-- may replace a function this file replaces (see docs/CITUS.md).
--
-- Each function here carries the marker `tenantry:citus-variant` in its
-- body: a migration that replaces one of them drops it, and the service then
-- refuses to start on Citus until this file has run again.
--
-- Plain SQL, and idempotent. On plain PostgreSQL these versions behave
-- exactly like the ones in sql/migrations (tests/api/citus.rs applies this
-- file to a plain database and runs the tenant, quota and usage paths on
-- it), so the only difference on Citus is the one each comment states.
--
-- Why anything differs: on Citus a tenant table is a set of shards on the
-- worker nodes, and every statement on a shard runs in a worker's own
-- session. RLS policies, trigger functions and the settings they read are
-- evaluated *there*. Citus forwards `SET LOCAL` to the workers of the
-- transaction (with citus.propagate_set_commands = 'local', set by
-- 03_roles.sql), but never a set_config call, which it cannot see: it
-- intercepts SET statements in its utility hook (ProcessUtility), which also
-- sees a SET LOCAL run by PL/pgSQL's EXECUTE.
--   Citus source: src/backend/distributed/commands/variableset.c
--   (ShouldPropagateSetCommand: only SET LOCAL of an allowed setting) and
--   commands/utility_hook.c ("Process SET LOCAL ... in multi-statement
--   transactions"). The pattern of SET LOCAL inside a PL/pgSQL function for
--   an RLS setting is also the one in citusdata/citus issues #7969, #8428.

-- Creating or replacing triggers on distributed tables needs this on Citus
-- (commands/trigger.c, ErrorOutForTriggerIfNotSupported). On plain
-- PostgreSQL it is an unused custom setting.
set citus.enable_unsafe_triggers = on;

-- bind_tenant: as V4, except that the quotas are set with SET LOCAL too.
-- They are read by count_tenant_rows(), which on Citus fires on the shard,
-- in the worker's session: set with set_config they would never get there,
-- and a tenant would have no quota at all. statement_timeout stays
-- coordinator-local: cancelling the statement on the coordinator cancels
-- its remote parts.
--
-- Deliberately NOT create_distributed_function(): a distributed function
-- call may be delegated to a worker, and then the SET LOCAL would happen in
-- that worker's session instead of the coordinator's, where every later
-- statement of the transaction is planned.
create or replace function bind_tenant(
    p_tenant uuid,
    p_statement_timeout_ms integer,
    p_max_users bigint,
    p_max_notes bigint,
    p_user uuid
)
returns table (tenant_status text, user_role text)
language plpgsql volatile security invoker
as $$
-- tenantry:citus-variant (the service's start-up check on Citus looks for this)
begin
    execute pg_catalog.format('set local app.tenant_id = %L', p_tenant);
    execute pg_catalog.format('set local app.max_users = %L', coalesce(p_max_users::text, ''));
    execute pg_catalog.format('set local app.max_notes = %L', coalesce(p_max_notes::text, ''));
    perform pg_catalog.set_config('statement_timeout', p_statement_timeout_ms::text, true);
    tenant_status := public.tenant_state(p_tenant);
    if p_user is not null then
        select u.role into user_role
        from public.users u
        where u.tenant_id = p_tenant and u.id = p_user;
    end if;
    return next;
end
$$;

-- count_tenant_rows: as V6 (a counter row proposed never negative, the
-- delta applied by the update), made shard-aware.
--
-- On Citus the statement-level triggers fire on the shard (TG_TABLE_NAME is
-- e.g. notes_102008), so the resource comes from the trigger's argument,
-- and the counter row is written to the colocated shard of usage_counters
-- on the same node, by name: writing to the distributed table itself from
-- a query on a shard is refused since Citus 11 ("cannot execute a
-- distributed query from a query on a shard", citusdata/citus pull
-- requests #5602, #5924). Colocation (02_distribute.sql) guarantees that
-- shard is local; get_shard_id_for_distribution_column finds it.
-- On plain PostgreSQL (or a table that is not distributed) TG_TABLE_NAME
-- equals the resource and the counter table is public.usage_counters.
create or replace function count_tenant_rows()
returns trigger
language plpgsql security invoker set search_path = ''
as $$
-- tenantry:citus-variant (the service's start-up check on Citus looks for this)
declare
    resource text := coalesce(tg_argv[0], tg_table_name);
    quota bigint := nullif(pg_catalog.current_setting('app.max_' || resource, true), '')::bigint;
    delta bigint := case tg_op when 'INSERT' then 1 else -1 end;
    counters text := 'usage_counters';
    changed record;
    used bigint;
begin
    for changed in
        select c.tenant_id, pg_catalog.count(*) as n from changed_rows c group by c.tenant_id
    loop
        if tg_table_name <> resource then
            counters := 'usage_counters_' || pg_catalog.get_shard_id_for_distribution_column(
                'public.usage_counters'::regclass, changed.tenant_id);
        end if;
        execute pg_catalog.format(
            'insert into public.%I as u (tenant_id, resource, used) values ($1, $2, greatest($3, 0))
             on conflict (tenant_id, resource) do update set used = greatest(u.used + $3, 0)
             returning u.used', counters)
            into used
            using changed.tenant_id, resource, delta * changed.n;
        if delta > 0 and used > quota then
            raise exception 'quota exceeded for %', resource
                using errcode = 'TQ001', table = resource;
        end if;
    end loop;
    return null;
end
$$;

-- The same triggers as V3, now naming their resource.
drop trigger if exists users_counted_on_insert on users;
create trigger users_counted_on_insert after insert on users
    referencing new table as changed_rows
    for each statement execute function count_tenant_rows('users');
drop trigger if exists users_counted_on_delete on users;
create trigger users_counted_on_delete after delete on users
    referencing old table as changed_rows
    for each statement execute function count_tenant_rows('users');
drop trigger if exists notes_counted_on_insert on notes;
create trigger notes_counted_on_insert after insert on notes
    referencing new table as changed_rows
    for each statement execute function count_tenant_rows('notes');
drop trigger if exists notes_counted_on_delete on notes;
create trigger notes_counted_on_delete after delete on notes
    referencing old table as changed_rows
    for each statement execute function count_tenant_rows('notes');

-- tenant_usage: as V2, except that each tenant is bound with SET LOCAL, so
-- that the counts, which run on the workers under RLS, see that tenant. It
-- stays on the coordinator (not distributed), like bind_tenant.
create or replace function tenant_usage(p_actor text, p_request_id text)
returns table (
    tenant_id uuid, slug text, plan text, status text,
    users bigint, notes bigint, storage_bytes bigint, logins_24h bigint
)
language plpgsql volatile security definer set search_path = ''
as $$
#variable_conflict use_column
-- tenantry:citus-variant (the service's start-up check on Citus looks for this)
declare
    t record;
    note_bytes bigint;
begin
    insert into public.platform_audit_events (actor, action, request_id)
    values (p_actor, 'analytics.usage_read', p_request_id);
    for t in select tn.id, tn.slug, tn.plan, tn.status from public.tenants tn order by tn.slug loop
        execute pg_catalog.format('set local app.tenant_id = %L', t.id);
        tenant_id := t.id;
        slug := t.slug;
        plan := t.plan;
        status := t.status;
        select count(*), coalesce(sum(pg_catalog.pg_column_size(u.*)), 0)
            into users, storage_bytes
            from public.users u where u.tenant_id = t.id;
        select count(*), coalesce(sum(pg_catalog.pg_column_size(n.*)), 0)
            into notes, note_bytes
            from public.notes n where n.tenant_id = t.id;
        storage_bytes := storage_bytes + note_bytes;
        select count(*) into logins_24h
            from public.audit_events a
            where a.tenant_id = t.id and a.action = 'login.succeeded' and a.at > pg_catalog.now() - interval '24 hours';
        return next;
    end loop;
    execute 'set local app.tenant_id = ''''';
end
$$;

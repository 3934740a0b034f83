-- V9: what every request costs PostgreSQL, made smaller. Same signatures,
-- results, owners (CREATE OR REPLACE keeps them), grants and pinned
-- search_path as before: every revision calls these unchanged, so this is
-- compatible with the one running before it. What each change saves per
-- request is measured in docs/BENCHMARKS.md.

-- tenant_state() runs in every tenant transaction (bind_tenant, V4, calls
-- it). As a LANGUAGE sql function that cannot be inlined (it is SECURITY
-- DEFINER), PostgreSQL 15 parses and plans its query on every call; as
-- PL/pgSQL, the plan is made once per connection and kept (the registry's
-- primary key, whichever tenant is asked about).
create or replace function tenant_state(p_id uuid)
returns text
language plpgsql stable security definer set search_path = ''
as $$
begin
    return (select t.status from public.tenants t where t.id = p_id);
end
$$;

-- count_tenant_rows(): V6's rules (a counter never below zero, the quota
-- checked on the count after the insert, the counter row locked until
-- commit so that concurrent inserts of a tenant queue on it), in a cheaper
-- shape. V6 ran one INSERT .. ON CONFLICT DO UPDATE over the transition
-- table, which counted it twice (the proposed row, then a subquery in the
-- update) and went through the conflict check on every insert. The
-- counter row exists for every statement but a tenant's first of its
-- kind, so a plain UPDATE comes first, and the upsert only when that found
-- nothing. Still one counter statement per tenant of the statement's rows,
-- so a bulk insert or delete (an import, a purge) costs one update, not
-- one per row.
--
-- On a Citus cluster the function is sql/citus/01_functions.sql's variant
-- (it carries the marker `tenantry:citus-variant`), which already has this
-- shape; it is left in place, so that the revision still serving while
-- this migration runs keeps counting on the shards (this version, on a
-- shard, would write the distributed table from a shard query, which Citus
-- refuses: every insert would fail until the scripts ran again).
do $do$
begin
    if pg_catalog.strpos(
           pg_catalog.pg_get_functiondef('public.count_tenant_rows()'::pg_catalog.regprocedure),
           'tenantry:citus-variant') > 0 then
        return;
    end if;
    create or replace function public.count_tenant_rows()
    returns trigger
    language plpgsql security invoker set search_path = ''
    as $body$
    declare
        quota bigint := nullif(pg_catalog.current_setting('app.max_' || tg_table_name, true), '')::bigint;
        delta bigint := case tg_op when 'INSERT' then 1 else -1 end;
        changed record;
        counted bigint;
    begin
        for changed in
            select c.tenant_id, pg_catalog.count(*) as n from changed_rows c group by c.tenant_id
        loop
            -- Clamped: a counter that drifted low must not make deletes fail.
            update public.usage_counters u set used = greatest(u.used + delta * changed.n, 0)
            where u.tenant_id = changed.tenant_id and u.resource = tg_table_name
            returning u.used into counted;
            if not found then
                insert into public.usage_counters as u (tenant_id, resource, used)
                values (changed.tenant_id, tg_table_name, greatest(delta * changed.n, 0))
                on conflict (tenant_id, resource) do update
                    set used = greatest(u.used + delta * changed.n, 0)
                returning u.used into counted;
            end if;
            if delta > 0 and counted > quota then
                raise exception 'quota exceeded for %', tg_table_name
                    using errcode = 'TQ001', table = tg_table_name;
            end if;
        end loop;
        return null;
    end
    $body$;
end
$do$;

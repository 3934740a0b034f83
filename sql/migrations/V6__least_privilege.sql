-- V6: what the runtime role (tenantry_app) may do, narrowed to what the
-- service does. A stolen runtime credential (or a bug in our code) can still
-- bind itself to any tenant, by design; it must not be able to bend the
-- rules inside one (docs: README, "Isolation guarantees", the threat model).

-- Usage counters change only through the metering trigger. The trigger
-- runs as the role that inserted or deleted the counted rows (SECURITY
-- INVOKER, so the counter write is under the same RLS policy as the rows),
-- which is why the runtime role holds INSERT and UPDATE on usage_counters;
-- with them it could set a counter to any number and lift its own quota for
-- good. A restrictive policy now lets the runtime and registry roles write
-- counters only from inside a trigger (pg_trigger_depth() > 0): they cannot
-- create triggers or functions, so the only trigger there is ours.
create policy counters_change_only_by_the_trigger on usage_counters
    as restrictive for all to tenantry_app, tenantry_registry
    using (true)
    with check (pg_catalog.pg_trigger_depth() > 0);

-- And whatever writes them, a counter never goes below zero. The trigger's
-- body is V3's, but for the counter row it proposes: never negative (a
-- CHECK applies to the proposed row of an INSERT .. ON CONFLICT before the
-- conflict is found), the delta itself applied by the update.
create or replace function count_tenant_rows()
returns trigger
language plpgsql security invoker set search_path = ''
as $$
declare
    quota bigint := nullif(pg_catalog.current_setting('app.max_' || tg_table_name, true), '')::bigint;
    delta bigint := case tg_op when 'INSERT' then 1 else -1 end;
    counter record;
begin
    for counter in
        insert into public.usage_counters as u (tenant_id, resource, used)
        select c.tenant_id, tg_table_name, greatest(delta * pg_catalog.count(*), 0)
        from changed_rows c
        group by c.tenant_id
        on conflict (tenant_id, resource) do update
            set used = u.used + delta * (select pg_catalog.count(*) from changed_rows c
                                         where c.tenant_id = excluded.tenant_id)
        returning u.used
    loop
        if delta > 0 and counter.used > quota then
            raise exception 'quota exceeded for %', tg_table_name
                using errcode = 'TQ001', table = tg_table_name;
        end if;
    end loop;
    return null;
end
$$;
alter table usage_counters add constraint usage_counters_used_not_negative check (used >= 0);

-- The audit trail is append-only for the runtime role (sql/grants.sql); it
-- records sign-ups, sign-ins and users' actions, never an operator's. A
-- restrictive policy (ANDed with the tenant policy) keeps the runtime role
-- from writing events that claim to come from an operator.
create policy audit_actor_is_not_an_operator on audit_events
    as restrictive for insert to tenantry_app
    with check (actor_kind <> 'admin');

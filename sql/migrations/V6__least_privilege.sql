-- V6: what the runtime role (tenantry_app) may do, narrowed to what the
-- service does. A stolen runtime credential (or a bug in our code) can still
-- bind itself to any tenant, by design; it must not be able to bend the
-- rules inside one (docs: README, "Isolation guarantees", the threat model).

-- Usage counters change only through the metering trigger. The trigger
-- runs as the role that inserted or deleted the counted rows (SECURITY
-- INVOKER, so the counter write is under the same RLS policy as the rows),
-- which is why the runtime role holds INSERT and UPDATE on usage_counters;
-- with them it could set a counter to any number and lift its own quota for
-- good. A guard trigger now refuses a counter write by the runtime or
-- registry role unless it comes from inside another trigger
-- (pg_trigger_depth() of 2 or more: the guard's own firing is 1). Those
-- roles can create neither triggers nor functions (not even temporary ones:
-- sql/grants.sql takes TEMPORARY on the database from PUBLIC), so the only
-- trigger there is ours. A trigger, not a restrictive policy: Citus copies policies
-- to the shards without AS RESTRICTIVE, and a permissive one would widen
-- what the tenant policy allows.
create function guard_usage_counters()
returns trigger
language plpgsql security invoker set search_path = ''
as $$
begin
    if pg_catalog.pg_trigger_depth() < 2 and current_user in ('tenantry_app', 'tenantry_registry') then
        raise exception 'usage counters change only by the counting trigger'
            using errcode = 'insufficient_privilege';
    end if;
    return new;
end
$$;
revoke all on function guard_usage_counters() from public;
create trigger usage_counters_written_by_the_trigger_only before insert or update on usage_counters
    for each row execute function guard_usage_counters();

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
            -- Clamped: a counter that drifted low must not make deletes fail.
            set used = greatest(u.used + delta * (select pg_catalog.count(*) from changed_rows c
                                                  where c.tenant_id = excluded.tenant_id), 0)
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
-- records sign-ups, sign-ins and users' actions, never an operator's (an
-- operator's onboarding writes its events as tenantry_registry, and the
-- admin role its own). A guard trigger keeps the runtime role from writing
-- events that claim to come from an operator (a trigger, for the same
-- Citus reason as above).
create function guard_audit_actor()
returns trigger
language plpgsql security invoker set search_path = ''
as $$
begin
    if current_user = 'tenantry_app' and new.actor_kind = 'admin' then
        raise exception 'the runtime role does not record operators'' actions'
            using errcode = 'insufficient_privilege';
    end if;
    return new;
end
$$;
revoke all on function guard_audit_actor() from public;
create trigger audit_events_never_in_an_operators_name before insert on audit_events
    for each row execute function guard_audit_actor();

-- Owners come from onboarding only (onboard_tenant, as tenantry_registry) or
-- an operator's import (as tenantry_admin). The runtime role registers
-- members; it has no UPDATE on users (sql/grants.sql), and this guard keeps
-- it from inserting an owner.
create function guard_user_role()
returns trigger
language plpgsql security invoker set search_path = ''
as $$
begin
    if current_user = 'tenantry_app' and new.role <> 'member' then
        raise exception 'the runtime role registers members only'
            using errcode = 'insufficient_privilege';
    end if;
    return new;
end
$$;
revoke all on function guard_user_role() from public;
create trigger users_registered_as_members_only before insert on users
    for each row execute function guard_user_role();

-- The V1 registration function took a plan from its caller, the runtime
-- role; V5 kept it for the revisions still running during that deploy.
-- Sign-up goes through signup_tenant() (V5), which takes no plan: contract.
drop function create_tenant(uuid, text, text, text);

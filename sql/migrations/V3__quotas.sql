-- V3: per-tenant usage counters, so that plan quotas (most users, most notes)
-- are enforced atomically and without counting a tenant's rows on every insert.
--
-- Statement-level triggers on users and notes keep one counter row per tenant
-- and resource up to date, in the same transaction as the change. Inserting
-- bumps the counter with INSERT .. ON CONFLICT DO UPDATE, which row-locks it
-- until commit: concurrent inserts of one tenant queue on that row and each
-- sees the others' committed counts, so no race lets a tenant past its quota.
-- The quota itself comes from the transaction-local settings app.max_users
-- and app.max_notes, which the service sets from the tenant's plan when it
-- binds the transaction (src/db/mod.rs); unset or '' means no quota (the
-- operator tools: an import restores whatever the file holds).
--
-- The backfill lifts FORCE on users and notes, which locks them (ACCESS
-- EXCLUSIVE) until this migration commits, while it counts their rows: give
-- up rather than queue every request behind a long-running transaction.
set local lock_timeout = '5s';

create table usage_counters (
    tenant_id uuid not null,
    resource text not null,
    used bigint not null default 0,
    constraint usage_counters_pkey primary key (tenant_id, resource),
    constraint usage_counters_tenant_fkey foreign key (tenant_id) references tenants (id),
    constraint usage_counters_resource_check check (resource in ('users', 'notes'))
);

alter table usage_counters enable row level security;
alter table usage_counters force row level security;
create policy tenant_isolation on usage_counters
    using      (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- The counts of the rows that exist now. The backfill spans tenants, and FORCE
-- makes RLS apply to the owner running this migration too, so FORCE is lifted
-- for the backfill alone, inside this migration's transaction.
alter table users no force row level security;
alter table notes no force row level security;
alter table usage_counters no force row level security;
insert into usage_counters (tenant_id, resource, used)
    select tenant_id, 'users', count(*) from users group by tenant_id
    union all
    select tenant_id, 'notes', count(*) from notes group by tenant_id;
alter table users force row level security;
alter table notes force row level security;
alter table usage_counters force row level security;

-- Counts the rows a statement inserted (+) or deleted (-) into the counter of
-- the table's resource, and refuses an insert that takes the tenant past
-- app.max_<table> with SQLSTATE TQ001 (the service answers 403
-- quota_exceeded). SECURITY INVOKER: it runs as whoever changed the rows, so
-- the counter write is under the same RLS policy as the rows themselves.
create function count_tenant_rows()
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
        select c.tenant_id, tg_table_name, delta * pg_catalog.count(*)
        from changed_rows c
        group by c.tenant_id
        on conflict (tenant_id, resource) do update set used = u.used + excluded.used
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
revoke all on function count_tenant_rows() from public;

create trigger users_counted_on_insert after insert on users
    referencing new table as changed_rows
    for each statement execute function count_tenant_rows();
create trigger users_counted_on_delete after delete on users
    referencing old table as changed_rows
    for each statement execute function count_tenant_rows();
create trigger notes_counted_on_insert after insert on notes
    referencing new table as changed_rows
    for each statement execute function count_tenant_rows();
create trigger notes_counted_on_delete after delete on notes
    referencing old table as changed_rows
    for each statement execute function count_tenant_rows();

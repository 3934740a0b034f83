-- V2: the tenant lifecycle: an audit trail per tenant, a platform audit log,
-- verified custom domains, idempotent onboarding, immediate suspension, and
-- the aggregate-only analytics path.

-- Idempotent onboarding: a client-supplied key, and a digest of the request
-- that used it first (the same key with a different request is a conflict).
alter table tenants
    add column idempotency_key text,
    add column request_sha256 text,
    add constraint tenants_idempotency_key_key unique (idempotency_key),
    add constraint tenants_idempotency_key_length check (char_length(idempotency_key) between 1 and 200);

-- A custom domain is pending until a DNS TXT record proves the tenant controls
-- it. Rows added before this migration were added by operators: verified.
-- The backfill spans tenants, and FORCE makes RLS apply to the owner running
-- this migration too (an unbound UPDATE would touch no row), so FORCE is
-- lifted for the backfill alone, inside this migration's transaction.
alter table tenant_domains
    add column verification_token text,
    add column verified_at timestamptz;
alter table tenant_domains no force row level security;
update tenant_domains set verification_token = replace(gen_random_uuid()::text, '-', ''), verified_at = created_at;
alter table tenant_domains force row level security;
alter table tenant_domains alter column verification_token set not null;

-- Only verified domains route.
create or replace function tenant_by_domain(p_domain text)
returns table (id uuid, slug text, name text, plan text, status text)
language sql stable security definer set search_path = ''
as $$
    select t.id, t.slug, t.name, t.plan, t.status
    from public.tenant_domains d
    join public.tenants t on t.id = d.tenant_id
    where d.domain = p_domain and d.verified_at is not null
$$;

-- The tenant's status, read by every tenant transaction in the same statement
-- that binds it, so a suspension (or a purge) applies to the next request on
-- every instance, whatever their caches say. NULL: no such tenant.
create function tenant_state(p_id uuid)
returns text
language sql stable security definer set search_path = ''
as $$
    select t.status from public.tenants t where t.id = p_id
$$;

-- The tenant's audit trail. Append-only for the service: the runtime role may
-- insert and read (under RLS), never change or delete; only the admin role
-- deletes, when a tenant is purged.
create table audit_events (
    tenant_id  uuid        not null,
    id         uuid        not null,
    -- clock_timestamp(): when the event happened, not when its transaction
    -- began, so events of one transaction keep their order.
    at         timestamptz not null default clock_timestamp(),
    actor_kind text        not null,
    actor_id   uuid,
    action     text        not null,
    subject    text,
    request_id text,
    details    jsonb       not null default '{}'::jsonb,
    constraint audit_events_pkey primary key (tenant_id, id),
    constraint audit_events_tenant_fkey foreign key (tenant_id) references tenants (id),
    constraint audit_events_actor_known check (actor_kind in ('user', 'admin', 'anonymous', 'system')),
    constraint audit_events_action_format check (action ~ '^[a-z_]+\.[a-z_]+$')
);
-- Serves "newest first" paging of a tenant's trail.
create index audit_events_newest_idx on audit_events (tenant_id, at desc, id desc);

alter table audit_events enable row level security;
alter table audit_events force row level security;
create policy tenant_isolation on audit_events
    using      (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- Actions that span tenants (listing them, reading usage) are not any one
-- tenant's business; they are recorded here, for operators.
create table platform_audit_events (
    id         uuid        not null default gen_random_uuid(),
    at         timestamptz not null default now(),
    actor      text        not null,
    action     text        not null,
    request_id text,
    details    jsonb       not null default '{}'::jsonb,
    constraint platform_audit_events_pkey primary key (id),
    constraint platform_audit_events_action_format check (action ~ '^[a-z_]+\.[a-z_]+$')
);

-- The audited cross-tenant path. It visits each tenant in turn under that
-- tenant's own RLS context (so no policy is bypassed), returns only counts and
-- sizes, and records every call. Owned by tenantry_usage, which can read the
-- tenant tables under RLS and append to platform_audit_events, nothing else;
-- executable only by tenantry_analytics.
create function tenant_usage(p_actor text, p_request_id text)
returns table (
    tenant_id uuid, slug text, plan text, status text,
    users bigint, notes bigint, storage_bytes bigint, logins_24h bigint
)
language plpgsql volatile security definer set search_path = ''
as $$
#variable_conflict use_column
declare
    t record;
    note_bytes bigint;
begin
    insert into public.platform_audit_events (actor, action, request_id)
    values (p_actor, 'analytics.usage_read', p_request_id);
    for t in select tn.id, tn.slug, tn.plan, tn.status from public.tenants tn order by tn.slug loop
        perform pg_catalog.set_config('app.tenant_id', t.id::text, true);
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
    perform pg_catalog.set_config('app.tenant_id', '', true);
end
$$;

grant create on schema public to tenantry_registry, tenantry_usage;
alter function tenant_state(uuid) owner to tenantry_registry;
alter function tenant_usage(text, text) owner to tenantry_usage;
revoke create on schema public from tenantry_registry, tenantry_usage;
revoke all on function tenant_state(uuid) from public;
revoke all on function tenant_usage(text, text) from public;

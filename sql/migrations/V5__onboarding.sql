-- V5: onboarding in one statement, the same on plain PostgreSQL and Citus.
--
-- A new tenant's registry row, its owner, its first audit events and, for
-- operators, its pending custom domain are written by one SECURITY DEFINER
-- function, in the caller's transaction (already bound to the new tenant).
-- Why one function for all of it: on Citus, `tenants` is a reference table
-- and the tenant tables are distributed, and Citus writes to a worker over
-- a connection of the *current user*. With the registry row written inside
-- create_tenant() (as tenantry_registry) and the owner inserted by the
-- caller (as tenantry_app), the two writes travelled over two connections
-- to the same worker, and the owner's foreign key to `tenants` could not see
-- the uncommitted registry row there (users_tenant_fkey). Written by one
-- role, they share one connection per worker, and the whole onboarding
-- commits or vanishes together on both engines.
--
-- The checks live here, not (only) in the service: the function is the
-- boundary a database role meets. The tenant must be the one the
-- transaction is bound to; reserved slugs are refused (tenants_slug_reserved);
-- uniqueness is the registry's own constraints (tenants_slug_key, ...).
--
-- Two doors, one room: signup_tenant() for the runtime role (the default
-- plan, no custom domain, no idempotency key, never an operator as the
-- actor), onboard_tenant() for the admin role (everything).

-- Slugs no tenant may have (names of the service's own hosts and words a
-- user would mistake for the service). src/domain.rs has the same list for
-- early, friendly answers; a test keeps the two equal.
create function reserved_slugs()
returns text[]
language sql immutable parallel safe
as $$
    select array[
        'admin', 'api', 'app', 'apps', 'assets', 'auth', 'billing', 'blog', 'cdn',
        'console', 'dashboard', 'dev', 'docs', 'ftp', 'help', 'imap', 'internal',
        'login', 'mail', 'ns1', 'ns2', 'pop', 'root', 'signup', 'smtp', 'staging',
        'static', 'status', 'support', 'system', 'tenantry', 'test', 'webmail', 'www'
    ]::text[]
$$;

create function onboard_tenant(
    p_id uuid,
    p_slug text,
    p_name text,
    p_plan text,
    p_idempotency_key text,
    p_request_sha256 text,
    p_owner_id uuid,
    p_owner_username text,
    p_owner_email text,
    p_owner_password_hash text,
    p_domain text,
    p_domain_token text,
    p_actor_kind text,
    p_request_id text,
    p_event_ids uuid[]
)
returns table (tenant_created_at timestamptz, owner_created_at timestamptz, domain_created_at timestamptz)
language plpgsql volatile security definer set search_path = ''
as $$
begin
    if p_id is distinct from nullif(pg_catalog.current_setting('app.tenant_id', true), '')::uuid then
        raise exception 'onboarding must run in a transaction bound to the new tenant'
            using errcode = 'insufficient_privilege';
    end if;
    if p_slug = any(public.reserved_slugs()) then
        raise exception 'the slug % is reserved', p_slug
            using errcode = 'check_violation', constraint = 'tenants_slug_reserved', table = 'tenants';
    end if;
    if pg_catalog.cardinality(p_event_ids) < 3 then
        raise exception 'onboarding needs three event ids' using errcode = 'invalid_parameter_value';
    end if;
    insert into public.tenants (id, slug, name, plan, idempotency_key, request_sha256)
        values (p_id, p_slug, p_name, coalesce(p_plan, 'free'), p_idempotency_key, p_request_sha256)
        returning created_at into tenant_created_at;
    insert into public.users (tenant_id, id, username, email, password_hash, role)
        values (p_id, p_owner_id, p_owner_username, p_owner_email, p_owner_password_hash, 'owner')
        returning created_at into owner_created_at;
    insert into public.audit_events (tenant_id, id, actor_kind, action, subject, request_id)
        values (p_id, p_event_ids[1], p_actor_kind, 'tenant.created', p_slug, p_request_id),
               (p_id, p_event_ids[2], p_actor_kind, 'user.registered', p_owner_id::text, p_request_id);
    if p_domain is not null then
        insert into public.tenant_domains (domain, tenant_id, verification_token)
            values (p_domain, p_id, p_domain_token)
            returning created_at into domain_created_at;
        insert into public.audit_events (tenant_id, id, actor_kind, action, subject, request_id)
            values (p_id, p_event_ids[3], p_actor_kind, 'domain.added', p_domain, p_request_id);
    end if;
    return next;
end
$$;

-- Sign-up over the API, as the runtime role: what anyone on the internet may
-- ask for (with open sign-up), so the plan is the registry's default and
-- the actor is never an operator.
create function signup_tenant(
    p_id uuid,
    p_slug text,
    p_name text,
    p_owner_id uuid,
    p_owner_username text,
    p_owner_email text,
    p_owner_password_hash text,
    p_actor_kind text,
    p_request_id text,
    p_event_ids uuid[]
)
returns table (tenant_created_at timestamptz, owner_created_at timestamptz, domain_created_at timestamptz)
language plpgsql volatile security definer set search_path = ''
as $$
begin
    if p_actor_kind is null or p_actor_kind not in ('anonymous', 'system') then
        raise exception 'sign-up is recorded as anonymous or system, not %', p_actor_kind
            using errcode = 'insufficient_privilege';
    end if;
    return query
        select o.tenant_created_at, o.owner_created_at, o.domain_created_at
        from public.onboard_tenant(p_id, p_slug, p_name, null, null, null,
                                   p_owner_id, p_owner_username, p_owner_email, p_owner_password_hash,
                                   null, null, p_actor_kind, p_request_id, p_event_ids) o;
end
$$;

-- The V1 registration function stays for revisions still running during a
-- deploy (expand, then contract), with the reserved-slug check it lacked.
create or replace function create_tenant(p_id uuid, p_slug text, p_name text, p_plan text)
returns void
language plpgsql volatile security definer set search_path = ''
as $$
begin
    if p_id is distinct from nullif(pg_catalog.current_setting('app.tenant_id', true), '')::uuid then
        raise exception 'create_tenant must run in a transaction bound to the new tenant'
            using errcode = 'insufficient_privilege';
    end if;
    if p_slug = any(public.reserved_slugs()) then
        raise exception 'the slug % is reserved', p_slug
            using errcode = 'check_violation', constraint = 'tenants_slug_reserved', table = 'tenants';
    end if;
    insert into public.tenants (id, slug, name, plan) values (p_id, p_slug, p_name, p_plan);
end
$$;

grant create on schema public to tenantry_registry;
alter function onboard_tenant(uuid, text, text, text, text, text, uuid, text, text, text, text, text, text, text, uuid[])
    owner to tenantry_registry;
alter function signup_tenant(uuid, text, text, uuid, text, text, text, text, text, uuid[])
    owner to tenantry_registry;
revoke create on schema public from tenantry_registry;
revoke all on function reserved_slugs() from public;
revoke all on function onboard_tenant(uuid, text, text, text, text, text, uuid, text, text, text, text, text, text, text, uuid[])
    from public;
revoke all on function signup_tenant(uuid, text, text, uuid, text, text, text, text, text, uuid[])
    from public;

-- For later migrations that add a tenant table, the same on both engines:
--     create table attachments (tenant_id uuid not null, ..., primary key (tenant_id, id));
--     select distribute_tenant_table('attachments');
--     alter table attachments add constraint ... foreign key (tenant_id, note_id) references notes ...;
-- On Citus it distributes the table by tenant_id beside users (so that its
-- foreign keys to the other tenant tables, added after, are allowed); on
-- plain PostgreSQL it does nothing. sql/citus/02_distribute.sql still needs
-- the table's line (CI checks it), and finds it already placed.
create function distribute_tenant_table(p_table regclass)
returns void
language plpgsql volatile security invoker set search_path = ''
as $$
begin
    if exists (select 1 from pg_catalog.pg_extension where extname = 'citus') then
        execute 'select pg_catalog.create_distributed_table($1, ''tenant_id'', colocate_with => ''public.users'')'
            using p_table;
    end if;
end
$$;
revoke all on function distribute_tenant_table(regclass) from public;

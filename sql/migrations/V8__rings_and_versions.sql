-- V8: release rings and API versions per tenant, and the first ring-aware
-- backfill (expand step of notes.size_bytes).
--
-- Expand only: every statement here is compatible with the revision that
-- runs before it (it selects named columns and ignores new ones), so the
-- schema can go first and the revisions follow ring by ring
-- (docs/ROLLOUT.md).

-- Which revision serves a tenant: the load balancer sends a ring's hosts to
-- the Cloud Run revision tagged for that ring (infra/), and each revision
-- knows its own ring (RELEASE_RING). New tenants start in 'stable'.
alter table tenants
    add column ring text not null default 'stable'
        constraint tenants_ring_known check (ring in ('canary', 'early', 'stable'));

-- The dated API version a tenant's requests are answered in unless one names
-- another (the Api-Version header). Tenants that exist now have been served
-- the first version's shapes, so they keep it; a tenant signing up from now
-- on is pinned to the newest version of the day. A migration that ships a
-- new version moves this default (a test checks it names the binary's newest
-- version).
alter table tenants
    add column api_version text not null default '2026-11-22'
        constraint tenants_api_version_is_a_date check (api_version ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$');
alter table tenants alter column api_version set default '2026-12-07';

-- The registry's answer for a host now carries both. A function's result
-- type cannot be changed in place; dropped and created again in this
-- transaction, so no caller ever sees it missing.
drop function tenant_by_slug(text);
create function tenant_by_slug(p_slug text)
returns table (id uuid, slug text, name text, plan text, status text, ring text, api_version text)
language sql stable security definer set search_path = ''
as $$
    select t.id, t.slug, t.name, t.plan, t.status, t.ring, t.api_version
    from public.tenants t
    where t.slug = p_slug
$$;

drop function tenant_by_domain(text);
-- Only verified domains route (V2).
create function tenant_by_domain(p_domain text)
returns table (id uuid, slug text, name text, plan text, status text, ring text, api_version text)
language sql stable security definer set search_path = ''
as $$
    select t.id, t.slug, t.name, t.plan, t.status, t.ring, t.api_version
    from public.tenant_domains d
    join public.tenants t on t.id = d.tenant_id
    where d.domain = p_domain and d.verified_at is not null
$$;

-- Owned by the registry role as before (V1), which may own objects in the
-- schema only while this migration runs.
grant create on schema public to tenantry_registry;
alter function tenant_by_slug(text) owner to tenantry_registry;
alter function tenant_by_domain(text) owner to tenantry_registry;
revoke create on schema public from tenantry_registry;
revoke all on function tenant_by_slug(text) from public;
revoke all on function tenant_by_domain(text) from public;

-- A note's size in bytes, for storage accounting. Expand: nullable, and
-- kept right on every write by a trigger, so that every revision, older ones
-- included, writes it (an older revision's statements do not name the
-- column: had the service been left to write it, an older revision still
-- serving a ring would leave NULLs, or stale sizes after an edit). The rows
-- written before this migration are filled by the `note-size` backfill
-- (`tenantry migrate backfill note-size --ring canary`, ring by ring). A
-- later migration makes it NOT NULL once every ring is done (contract).
alter table notes add column size_bytes integer;
create function note_size_bytes()
returns trigger
language plpgsql security invoker set search_path = ''
as $$
begin
    new.size_bytes := pg_catalog.octet_length(new.content);
    return new;
end
$$;
revoke all on function note_size_bytes() from public;
-- On every update, not `update of content`: a column list would make the
-- trigger depend on the column and block a later `alter column content
-- type` (notes are only ever updated with their content anyway).
create trigger notes_size_bytes_follow_content before insert or update on notes
    for each row execute function note_size_bytes();
-- NOT VALID: the rows written before are all NULL, and validating would
-- scan the table under this migration's lock; new rows are checked.
alter table notes add constraint notes_size_bytes_matches
    check (size_bytes is null or size_bytes = octet_length(content)) not valid;

-- Where a backfill stands for each tenant, so that a run interrupted at any
-- point resumes where it stopped and `tenantry migrate backfill --status`
-- reports per ring. Operator bookkeeping, like schema_migrations: written
-- and read only by the admin role (in the transaction of the batch it
-- records, so progress is exact), never by the service, and not part of a
-- tenant's data (an export leaves it out; a purged tenant's rows
-- are ignored by the report, which joins the registry). No foreign key:
-- on Citus it is a coordinator-local table beside a reference table.
create table backfill_progress (
    backfill    text        not null,
    tenant      uuid        not null,
    -- The last primary key done: the next batch starts after it.
    last_id     uuid,
    rows_done   bigint      not null default 0,
    started_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    finished_at timestamptz,
    constraint backfill_progress_pkey primary key (backfill, tenant)
);

-- V9: the tenant's status is read with a plan kept by the connection.
--
-- tenant_state() runs in every tenant transaction (bind_tenant, V4, calls
-- it). As a LANGUAGE sql function that cannot be inlined (it is SECURITY
-- DEFINER), PostgreSQL 15 parses and plans its query on every call; as
-- PL/pgSQL, the plan is made once per connection and kept (the
-- registry's primary key, whichever tenant is asked about). What that
-- saves per request is measured in docs/BENCHMARKS.md.
--
-- Same signature, result, owner (tenantry_registry: CREATE OR REPLACE
-- keeps it), grants and pinned search_path: every revision calls it
-- unchanged, so this is compatible with the one running before it.
create or replace function tenant_state(p_id uuid)
returns text
language plpgsql stable security definer set search_path = ''
as $$
begin
    return (select t.status from public.tenants t where t.id = p_id);
end
$$;

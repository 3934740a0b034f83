-- Privileges, re-applied in full at the end of every `tenantry migrate` (in the
-- same transaction), so this file is the single statement of who may do what.
-- Revoke everything, then grant exactly what is listed: a table added by a later
-- migration is invisible to the service until it is granted here.

revoke all on all tables in schema public from tenantry_app, tenantry_registry;
revoke all on all sequences in schema public from tenantry_app, tenantry_registry;
revoke all on all functions in schema public from tenantry_app, tenantry_registry;
revoke create on schema public from tenantry_app, tenantry_registry;
grant usage on schema public to tenantry_app, tenantry_registry;

-- Runtime role: plain DML on tenant tables (RLS decides which rows). No
-- TRUNCATE, REFERENCES or TRIGGER: TRUNCATE ignores RLS entirely.
grant select, insert, update, delete on users, notes to tenantry_app;
-- Lets the service check at boot that the schema is migrated far enough.
grant select on schema_migrations to tenantry_app;
-- The pre-tenant path: host -> tenant lookups and tenant registration.
grant execute on function tenant_by_slug(text), tenant_by_domain(text),
    create_tenant(uuid, text, text, text) to tenantry_app;

-- Registry role: what the SECURITY DEFINER functions it owns need, nothing more.
grant select, insert on tenants to tenantry_registry;
grant select on tenant_domains to tenantry_registry;

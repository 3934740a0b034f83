-- Roles tenantry needs, ensured on every `tenantry migrate` before the versioned
-- migrations run. Roles are cluster-wide (not per database), so this file is
-- idempotent instead of versioned.
--
--   the migrating role (whoever runs `tenantry migrate`, e.g. tenantry_owner)
--       owns the schema and every table; needs CREATEROLE the first time.
--   tenantry_app
--       the runtime role the service logs in as: DML on tenant tables only,
--       never superuser, never BYPASSRLS, owns nothing, member of nothing.
--   tenantry_registry
--       NOLOGIN; owns the SECURITY DEFINER functions that read and write the
--       tenant registry (host -> tenant lookup, tenant creation). Nobody can act
--       as it except through those functions.

do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'tenantry_app') then
        create role tenantry_app nologin nosuperuser nobypassrls nocreatedb nocreaterole noinherit;
    end if;
exception
    -- Another database of this cluster is migrating at the same moment.
    when duplicate_object or unique_violation then null;
end
$$;

do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'tenantry_registry') then
        create role tenantry_registry nologin nosuperuser nobypassrls nocreatedb nocreaterole noinherit;
    end if;
exception
    when duplicate_object or unique_violation then null;
end
$$;

-- A role that bypasses RLS would make every policy below decorative. Changing
-- these attributes needs a superuser, so refuse loudly instead of trying.
do $$
declare
    offender text;
begin
    select string_agg(rolname, ', ') into offender
    from pg_catalog.pg_roles
    where rolname in ('tenantry_app', 'tenantry_registry')
      and (rolsuper or rolbypassrls or rolcreaterole or rolcreatedb);
    if offender is not null then
        raise exception 'role(s) % must be NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB', offender
            using hint = 'a superuser must run: ALTER ROLE <role> NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB';
    end if;
end
$$;

-- The migrating role hands the registry functions to tenantry_registry
-- (ALTER FUNCTION .. OWNER TO), which requires membership.
do $$
begin
    if not pg_catalog.pg_has_role(current_user, 'tenantry_registry', 'MEMBER') then
        execute pg_catalog.format('grant tenantry_registry to %I', current_user);
    end if;
end
$$;

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
--   tenantry_admin
--       the admin role (CLI and /admin API, never the request path): DML on
--       the registry and, under RLS, on tenant tables; the only role that may
--       delete audit events (when a tenant is purged).
--   tenantry_analytics
--       the analytics role: may only call tenant_usage(), which returns counts.
--   tenantry_usage
--       NOLOGIN; owns tenant_usage(), reads tenant tables under RLS.
--
-- Login roles are created NOLOGIN; `tenantry migrate` gives them LOGIN and a
-- password when RUNTIME_ROLE_PASSWORD, ADMIN_ROLE_PASSWORD or
-- ANALYTICS_ROLE_PASSWORD is set (or an operator creates them with LOGIN).

do $$
declare
    role_name text;
begin
    foreach role_name in array array['tenantry_app', 'tenantry_registry', 'tenantry_admin', 'tenantry_analytics', 'tenantry_usage'] loop
        begin
            if not exists (select from pg_catalog.pg_roles where rolname = role_name) then
                execute pg_catalog.format('create role %I nologin nosuperuser nobypassrls nocreatedb nocreaterole noinherit', role_name);
            end if;
        exception
            -- Another database of this cluster is migrating at the same moment.
            when duplicate_object or unique_violation then null;
        end;
    end loop;
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
    where rolname in ('tenantry_app', 'tenantry_registry', 'tenantry_admin', 'tenantry_analytics', 'tenantry_usage')
      and (rolsuper or rolbypassrls or rolcreaterole or rolcreatedb);
    if offender is not null then
        raise exception 'role(s) % must be NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB', offender
            using hint = 'a superuser must run: ALTER ROLE <role> NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB';
    end if;
end
$$;

-- The migrating role hands functions to tenantry_registry and tenantry_usage
-- (ALTER FUNCTION .. OWNER TO), which requires membership.
--
-- On a Citus coordinator the ALTER FUNCTION runs on every worker too, so the
-- membership must hold there as well. Citus forwards a GRANT of roles only
-- when it already knows both roles in this database (pg_dist_object is per
-- database): roles created before this database had the extension (by the
-- operator, or for another database of the cluster) would be members on
-- the coordinator alone, and V1 would stop with "must be member of role
-- tenantry_registry" on a worker. So on Citus the grant is also sent to
-- every worker (as one statement: run_command_on_workers reports only a
-- command's first result). `tenantry migrate` runs this file statement by
-- statement, so the roles above are committed, and visible to the workers'
-- own connections, by the time this runs.
do $$
declare
    role_name text;
    failed text;
begin
    foreach role_name in array array['tenantry_registry', 'tenantry_usage'] loop
        if not pg_catalog.pg_has_role(current_user, role_name, 'MEMBER') then
            execute pg_catalog.format('grant %I to %I', role_name, current_user);
        end if;
        continue when not exists (select from pg_catalog.pg_extension where extname = 'citus');
        execute $run$
            select pg_catalog.string_agg(w.nodename || ':' || w.nodeport || ': ' || w.result, '; ')
            from pg_catalog.run_command_on_workers($1) w
            where not w.success
        $run$
        into failed
        -- Propagation off on the worker: with metadata synced, a worker
        -- forwards DDL to the other nodes too.
        using pg_catalog.format(
            'do %L', pg_catalog.format(
                'begin set local citus.enable_ddl_propagation = off; grant %I to %I; end',
                role_name, current_user));
        if failed is not null then
            raise exception 'could not make % a member of % on every worker: %', current_user, role_name, failed;
        end if;
    end loop;
end
$$;

-- Citus, step 3 of 3: the service's roles, usable on every node. Run on the
-- coordinator as a superuser, after 02_distribute.sql, with the same
-- password variables as `tenantry migrate` (and, optionally,
-- DEFINER_ROLE_PASSWORD, see below):
--     RUNTIME_ROLE_PASSWORD=... ADMIN_ROLE_PASSWORD=... ANALYTICS_ROLE_PASSWORD=... \
--         psql "$CITUS_SUPERUSER_URL" -v ON_ERROR_STOP=1 -f sql/citus/03_roles.sql
-- Idempotent; run it again after every migrate and after a password change.
-- `tenantry citus check` then proves every role reaches every worker.
--
-- Why: Citus runs a statement on a worker over a connection it opens itself,
-- as the current user, authenticated by the worker like any client (the
-- coordinator's pg_dist_authinfo holds what it sends). Roles themselves
-- reach the workers (Citus propagates CREATE and ALTER ROLE, passwords
-- included), but a worker still has to let each one in:
--
--   tenantry_app, tenantry_admin, tenantry_analytics log in with the
--     passwords `tenantry migrate` gave them; the coordinator must present
--     the same ones to the workers;
--   tenantry_registry, tenantry_usage own the SECURITY DEFINER functions
--     (onboarding writes the reference table `tenants` on every node;
--     tenant_usage() counts rows on the workers), so Citus connects as them.
--     They are NOLOGIN on plain PostgreSQL. Here they get LOGIN with a
--     password written only to pg_dist_authinfo (superuser-only), random
--     unless DEFINER_ROLE_PASSWORD is given: nobody logs in as them, but the
--     coordinator can.
--
-- If your nodes authenticate each other otherwise (client certificates,
-- trust from the coordinator's address on a private network, a managed
-- service), leave the password variables unset: the definer roles still get
-- LOGIN, which every method needs.

-- The tenant setting reaches the workers. Tenant transactions bind
-- app.tenant_id (and the quotas) with SET LOCAL in bind_tenant(); Citus
-- forwards SET LOCAL only when this is 'local' (the default, 'none',
-- forwards nothing, and the RLS policies on the shards would see no tenant:
-- every query would find no rows). Set for every role that binds tenant
-- transactions or calls tenant_usage(), in this database only (the roles
-- are cluster-wide); it matters on the coordinator, which decides what to
-- forward. tenantry serve refuses to start on Citus without it.
do $$
declare
    role_name text;
begin
    foreach role_name in array array['tenantry_app', 'tenantry_admin', 'tenantry_analytics'] loop
        execute pg_catalog.format('alter role %I in database %I set citus.propagate_set_commands = %L',
                                  role_name, pg_catalog.current_database(), 'local');
    end loop;
end
$$;

-- What the coordinator presents to every node (nodeid 0) as `role_name`.
-- (A helper of this session only: nothing for Citus to propagate.)
set citus.enable_ddl_propagation = off;
create or replace function pg_temp.present_password(role_name text, secret text) returns void
language sql as $$
    delete from pg_catalog.pg_dist_authinfo where nodeid = 0 and rolename = role_name;
    insert into pg_catalog.pg_dist_authinfo (nodeid, rolename, authinfo)
        values (0, role_name, 'password=''' || pg_catalog.replace(pg_catalog.replace(secret, '\', '\\'), '''', '\''') || '''');
$$;
reset citus.enable_ddl_propagation;

-- The definer owners: LOGIN, with a password known only to
-- pg_dist_authinfo: DEFINER_ROLE_PASSWORD if given; else the one this
-- database already presents (a re-run changes nothing); else a new random
-- one, generated inside the block, so it appears in no statement text (and
-- no server log). Roles are cluster-wide but pg_dist_authinfo is per
-- database: on a cluster holding several tenantry databases, give every
-- run the same DEFINER_ROLE_PASSWORD, or a later database's new password
-- locks the earlier ones out.
\getenv definer_password DEFINER_ROLE_PASSWORD
create temp table definer_password (secret text);
\if :{?definer_password}
insert into definer_password values (:'definer_password');
\endif
do $$
declare
    role_name text;
    given text := (select nullif(d.secret, '') from pg_temp.definer_password d);
    secret text;
begin
    foreach role_name in array array['tenantry_registry', 'tenantry_usage'] loop
        continue when given is null and exists (
            select 1 from pg_catalog.pg_dist_authinfo a where a.nodeid = 0 and a.rolename = role_name);
        secret := coalesce(given, pg_catalog.replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
        execute pg_catalog.format('alter role %I login password %L', role_name, secret);
        perform pg_temp.present_password(role_name, secret);
    end loop;
end
$$;
drop table definer_password;

-- The login roles: the passwords `tenantry migrate` set, when given.
\getenv runtime_password RUNTIME_ROLE_PASSWORD
\if :{?runtime_password}
select pg_temp.present_password('tenantry_app', :'runtime_password');
\endif
\getenv admin_password ADMIN_ROLE_PASSWORD
\if :{?admin_password}
select pg_temp.present_password('tenantry_admin', :'admin_password');
\endif
\getenv analytics_password ANALYTICS_ROLE_PASSWORD
\if :{?analytics_password}
select pg_temp.present_password('tenantry_analytics', :'analytics_password');
\endif

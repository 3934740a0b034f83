-- V4: bind a tenant transaction in one statement.
--
-- bind_tenant() is the first statement of every tenant transaction (sent in
-- the same round trip as BEGIN, see src/db/mod.rs). It sets the tenant with
-- SET LOCAL, the form that also reaches the workers of a Citus cluster
-- (citus.propagate_set_commands = 'local' forwards SET LOCAL, not
-- set_config), then the statement timeout and quotas, and answers the
-- tenant's status and, when a user is given, that user's role under the
-- tenant's RLS context: what used to take three statements.
--
-- SECURITY INVOKER, and deliberately without a SET clause: a function with
-- one restores every setting it changed, SET LOCAL included, when it returns.
-- Every name is schema-qualified instead. The tenant is a uuid and is quoted
-- with %L, so the SET cannot be made to say anything else.
create function bind_tenant(
    p_tenant uuid,
    p_statement_timeout_ms integer,
    p_max_users bigint,
    p_max_notes bigint,
    p_user uuid
)
returns table (tenant_status text, user_role text)
language plpgsql volatile security invoker
as $$
begin
    execute pg_catalog.format('set local app.tenant_id = %L', p_tenant);
    perform pg_catalog.set_config('statement_timeout', p_statement_timeout_ms::text, true),
            pg_catalog.set_config('app.max_users', coalesce(p_max_users::text, ''), true),
            pg_catalog.set_config('app.max_notes', coalesce(p_max_notes::text, ''), true);
    tenant_status := public.tenant_state(p_tenant);
    if p_user is not null then
        select u.role into user_role
        from public.users u
        where u.tenant_id = p_tenant and u.id = p_user;
    end if;
    return next;
end
$$;
revoke all on function bind_tenant(uuid, integer, bigint, bigint, uuid) from public;

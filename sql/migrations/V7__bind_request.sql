-- V7: the verdict of a tenant transaction, in the database.
--
-- bind_request() binds a transaction as bind_tenant() does (V4, or its
-- Citus variant), then refuses, with an error, a tenant or user that the
-- acting party requires and that is not there. An error aborts the
-- transaction, so every statement sent behind it fails and the COMMIT sent
-- behind those becomes a ROLLBACK: the service can send BEGIN, this call,
-- the request's statement and COMMIT in one round trip (src/db/transaction.rs)
-- without ever committing work that the verdict refuses.
--
-- p_require: 'active' (the tenant is active), 'user' (and p_user exists in
-- it), 'owner' (and p_user is its owner), 'new' (no tenant with this id
-- yet: onboarding), 'any' (an operator: any status).
--
-- The SQLSTATEs (class TB) are mapped by the service to its answers:
--   TB404 no such tenant          -> 404 unknown tenant
--   TB403 tenant suspended        -> 403 tenant_suspended
--   TB401 user gone               -> 401
--   TB402 user is not the owner   -> 403 forbidden
--   TB409 tenant already exists   -> an error (onboarding generates ids)
--   TB500 unknown status, or an unknown p_require
--
-- For requests (not operators, 'any'), bitmap scans are turned off for the
-- transaction: every request-path query is an index lookup or an
-- index-ordered scan, and without table statistics (a table never
-- analyzed: just restored, just loaded) the planner otherwise prefers a
-- bitmap scan plus a sort for the newest-notes page, which reads and sorts
-- the whole of a large tenant's notes (80 ms instead of well under one).
-- With it off, the plan is the same with statistics and without.
--
-- SECURITY INVOKER and without a SET clause, like bind_tenant (a SET
-- clause would undo its SET LOCAL on return).
create function bind_request(
    p_tenant uuid,
    p_statement_timeout_ms integer,
    p_max_users bigint,
    p_max_notes bigint,
    p_user uuid,
    p_require text
)
returns table (tenant_status text, user_role text)
language plpgsql volatile security invoker
as $$
begin
    select b.tenant_status, b.user_role into tenant_status, user_role
    from public.bind_tenant(p_tenant, p_statement_timeout_ms, p_max_users, p_max_notes, p_user) b;
    if p_require = 'any' then
        return next;
        return;
    end if;
    perform pg_catalog.set_config('enable_bitmapscan', 'off', true);
    if p_require = 'new' then
        if tenant_status is not null then
            raise exception 'tenant % already exists', p_tenant using errcode = 'TB409';
        end if;
        return next;
        return;
    elsif p_require not in ('active', 'user', 'owner') then
        raise exception 'unknown requirement %', p_require using errcode = 'TB500';
    end if;
    if tenant_status is null then
        raise exception 'no such tenant' using errcode = 'TB404';
    elsif tenant_status = 'suspended' then
        raise exception 'tenant suspended' using errcode = 'TB403';
    elsif tenant_status <> 'active' then
        raise exception 'tenant has unknown status %', tenant_status using errcode = 'TB500';
    end if;
    if p_require in ('user', 'owner') and user_role is null then
        raise exception 'no such user' using errcode = 'TB401';
    elsif p_require = 'owner' and user_role <> 'owner' then
        raise exception 'not the owner' using errcode = 'TB402';
    end if;
    return next;
end
$$;
revoke all on function bind_request(uuid, integer, bigint, bigint, uuid, text) from public;

--! Previous: -
--! Hash: sha1:24f8ce7d70925974f933550e594f09c1d26f6d47
--! Message: Foundation: schemas, privileges, timestamps and request identity

--------------------------------------------------------------------------------
-- Foundation: schemas, default privileges, shared trigger helpers and the request
-- identity that row-level security trusts.
--
-- Privileges are deny-by-default: nothing is visible to the request roles
-- (:DATABASE_ANONYMOUS, :DATABASE_USER) until a later migration grants it, and
-- PostGraphile only exposes what is granted.
--------------------------------------------------------------------------------

drop schema if exists app_public cascade;
drop schema if exists app_hidden cascade;
drop schema if exists app_private cascade;

-- Nobody but the owner may create objects or run functions by default.
revoke all on schema public from public;
alter default privileges revoke all on sequences from public;
alter default privileges revoke all on functions from public;
grant usage on schema public to :DATABASE_ANONYMOUS, :DATABASE_USER;

create schema app_public;
comment on schema app_public is 'Exposed through GraphQL: what the frontend sees, guarded by row-level security.';
grant usage on schema app_public to :DATABASE_ANONYMOUS, :DATABASE_USER;

create schema app_hidden;
comment on schema app_hidden is 'Helpers the request roles may call (policies, triggers) but GraphQL does not expose.';
grant usage on schema app_hidden to :DATABASE_ANONYMOUS, :DATABASE_USER;

create schema app_private;
comment on schema app_private is 'Secrets (password and token hashes, webhook payloads); reachable only through security definer functions.';

alter default privileges in schema app_public, app_hidden grant usage, select on sequences to :DATABASE_ANONYMOUS, :DATABASE_USER;

--------------------------------------------------------------------------------
-- Timestamps: every table with created_at/updated_at installs this trigger as
-- _100_timestamps. updated_at only moves forward, even if two updates share a now().
--------------------------------------------------------------------------------

create function app_private.tg__timestamps() returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
begin
  new.created_at = (case when tg_op = 'INSERT' then now() else old.created_at end);
  new.updated_at = (case
    when tg_op = 'UPDATE' and old.updated_at >= now() then old.updated_at + interval '1 millisecond'
    else now()
  end);
  return new;
end;
$$;
comment on function app_private.tg__timestamps() is
  'Trigger: sets created_at on insert and keeps updated_at strictly increasing on update.';

--------------------------------------------------------------------------------
-- Request identity. The API switches to the request's role and sets the claims
-- of its verified access token as `jwt.claims.*` settings, local to the
-- transaction. Policies call these helpers as `(select app_public.current_user_id())`
-- so PostgreSQL evaluates them once per statement.
--------------------------------------------------------------------------------

create function app_hidden.current_session_id() returns uuid
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select nullif(pg_catalog.current_setting('jwt.claims.session_id', true), '')::uuid;
$$;
comment on function app_hidden.current_session_id() is
  'The session id claim of the verified access token, or null for anonymous requests.';

create function app_public.current_user_id() returns uuid
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select nullif(pg_catalog.current_setting('jwt.claims.user_id', true), '')::uuid;
$$;
comment on function app_public.current_user_id() is
  'The id of the signed-in user making this request, or null when the request is anonymous.';

grant execute on function app_hidden.current_session_id() to :DATABASE_ANONYMOUS, :DATABASE_USER;
grant execute on function app_public.current_user_id() to :DATABASE_ANONYMOUS, :DATABASE_USER;

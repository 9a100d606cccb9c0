--! Previous: sha1:80b273b76143c3889bece899191bb08b43241022
--! Hash: sha1:8ff622426672789f69040073525c46854875f8e0
--! Message: Session check

-- The session check that travels with a GraphQL request's first statement (see
-- src/graphql/request-connection.ts). It raises, so PostgreSQL skips the statement behind it in
-- the same round trip: nothing of a signed-out caller's request runs.
create or replace function app_hidden.require_live_session(user_id uuid) returns void
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if app_public.current_user_id() is distinct from require_live_session.user_id then
    raise exception 'This session has ended (signed out or expired); sign in again.'
      using errcode = 'OS401', detail = 'session_ended';
  end if;
end;
$$;
comment on function app_hidden.require_live_session(uuid) is
  'Raises OS401 session_ended unless the request''s session is live and belongs to user_id.';
revoke all on function app_hidden.require_live_session(uuid) from public;
grant execute on function app_hidden.require_live_session(uuid) to :DATABASE_USER;

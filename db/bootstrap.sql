-- Cluster-level setup, run once as a superuser (`npm run db:bootstrap`, or `npm start` on the
-- embedded server). It creates the four roles the schema refers to; it never drops anything
-- and can run again safely. Placeholders use graphile-migrate's syntax and are filled in by
-- src/db/bootstrap.ts.
--
-- :DATABASE_OWNER          owns every object; runs migrations and the worker (LOGIN)
-- :DATABASE_AUTHENTICATOR  the API's login role; NOINHERIT, so it has no rights of its own
--                          until a request does SET ROLE to one of the two below
-- :DATABASE_ANONYMOUS      a request without a valid access token
-- :DATABASE_USER           a request from a signed-in user
do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = ':DATABASE_OWNER') then
    create role :DATABASE_OWNER with login;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = ':DATABASE_AUTHENTICATOR') then
    create role :DATABASE_AUTHENTICATOR with login noinherit;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = ':DATABASE_ANONYMOUS') then
    create role :DATABASE_ANONYMOUS with nologin;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = ':DATABASE_USER') then
    create role :DATABASE_USER with nologin;
  end if;
end
$$;

grant :DATABASE_ANONYMOUS to :DATABASE_AUTHENTICATOR;
grant :DATABASE_USER to :DATABASE_AUTHENTICATOR;

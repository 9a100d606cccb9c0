-- Database-level setup, run as a superuser right after the database is created (by
-- graphile-migrate reset, and by src/db/bootstrap.ts). Migrations themselves need no superuser.
grant connect on database :DATABASE_NAME to :DATABASE_OWNER;
grant connect on database :DATABASE_NAME to :DATABASE_AUTHENTICATOR;
grant all on database :DATABASE_NAME to :DATABASE_OWNER;
alter schema public owner to :DATABASE_OWNER;

-- Trusted extensions (PostgreSQL 13+), created here so the owner needs no CREATE on the database.
create extension if not exists citext with schema public;
create extension if not exists pgcrypto with schema public;
create extension if not exists btree_gin with schema public;

--! Previous: sha1:e2b4018a0611492a31c6f907436f62212136598c
--! Hash: sha1:3e9452809ba3ae6a3b807a12260b178e859a2987
--! Message: Narrower grant

-- The members-only helper serves the insert, update and delete policies, none of which apply to
-- the anonymous role (it may only read): it needs no grant there.
revoke execute on function app_hidden.current_user_member_organizations() from :DATABASE_ANONYMOUS;

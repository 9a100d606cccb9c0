--! Previous: sha1:8ff622426672789f69040073525c46854875f8e0
--! Hash: sha1:e2b4018a0611492a31c6f907436f62212136598c
--! Message: Login attempt race

-- begin_login_attempt under concurrent sign-ins from one client: it inserted the client's row
-- (or found it), then selected it for update in a second statement. A right password in between
-- deletes the row and a third attempt re-creates it; the select then found nothing, and the
-- final update wrote failures = null + 1 into the new row: a not-null violation, answered
-- "400 failures is required" (seen about once in 1,400 sign-ins of 32 concurrent clients).
-- INSERT … ON CONFLICT DO UPDATE … RETURNING makes or finds the row and locks it atomically.
create or replace function app_private.begin_login_attempt(email citext, client text, device_token text,
  backoff_after int, backoff_max_seconds int, email_max int, email_window_seconds int,
  out retry_after int, out device_id uuid)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_email citext := lower(btrim(begin_login_attempt.email));
  v_failures app_private.login_failures;
  v_delay int;
begin
  retry_after := 0;
  -- A device the user trusted, presenting its token for this very address: strangers' failures
  -- do not hold it back. Its own attempt counts against it until the password proves right.
  update app_private.trusted_devices d set failures = d.failures + 1
    from app_public.users u
    where d.token_hash = app_private.token_hash(begin_login_attempt.device_token) and u.id = d.user_id
      and u.email = v_email and d.failures < 10
    returning d.id into device_id;
  if device_id is not null then
    return;
  end if;

  -- Everyone else: the same rules whether or not the address has an account, so answers and
  -- timing reveal nothing. The row is locked, so parallel attempts from one client queue here
  -- and each sees the ones before it. One statement makes and locks it: an insert that found the
  -- row, then a select that no longer did (a right password deleted it in between), read nulls.
  insert into app_private.login_failures as f (email, client, failures, last_failed_at)
    values (v_email, begin_login_attempt.client, 0, '-infinity')
    on conflict on constraint login_failures_pkey do update set failures = f.failures
    returning * into v_failures;
  if v_failures.last_failed_at < now() - interval '1 day' then
    v_failures.failures := 0;
  end if;
  if v_failures.failures >= backoff_after then
    v_delay := least(backoff_max_seconds::numeric, power(2, least(v_failures.failures - backoff_after, 30)))::int;
    retry_after := greatest(0, ceil(extract(epoch from v_failures.last_failed_at + make_interval(secs => v_delay) - now())))::int;
    if retry_after > 0 then
      return;
    end if;
  end if;
  -- Many failures on one address from anywhere hold back every device that cannot show a
  -- device token for it.
  retry_after := app_private.consume_rate_limit('login_failures_email', v_email::text, email_max, email_window_seconds);
  if retry_after > 0 then
    return;
  end if;
  -- Counted as a failure now; a right password takes it back (login_succeeded).
  update app_private.login_failures f set failures = v_failures.failures + 1, last_failed_at = now()
    where f.email = v_email and f.client = begin_login_attempt.client;
end;
$$;

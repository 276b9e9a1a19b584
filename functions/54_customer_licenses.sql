-- lic.customers.licenses (sql/0039): each customer's licenses, its own and
-- those it holds a seat on, oldest first, with their status, expiry, grace end
-- and effective entitlement codes. Every change to what feeds it refreshes it
-- in the same transaction, so api.check_entitlement by customer reads one row
-- and is never stale; the time-dependent part (expiry, grace) is applied when
-- read, by private.effective_status.

create or replace function private.customer_licenses(account_id uuid, customer_id uuid)
returns lic.customer_license[]
language sql
stable
as $$
  select coalesce(
    array_agg(
      row(l.id, l.status, l.expires_at, l.grace_ends_at, l.entitlement_codes)::lic.customer_license order by l.id
    ),
    '{}'
  )
  from lic.licenses as l
  where
    l.account_id = customer_licenses.account_id
    and l.id in (
      select u.license_id from lic.license_users as u
      where u.account_id = customer_licenses.account_id and u.customer_id = customer_licenses.customer_id
      union
      select o.id from lic.licenses as o
      where o.account_id = customer_licenses.account_id and o.customer_id = customer_licenses.customer_id
    );
$$;
comment on function private.customer_licenses(uuid, uuid) is
'A customer''s licenses (its own and its seats), oldest first, as lic.customers.licenses holds them.';

create or replace function private.refresh_customer_licenses(account_id uuid, customer_ids uuid[])
returns void
language plpgsql
volatile
as $$
begin
  -- Lock, then read in a later statement (a fresh snapshot under read
  -- committed): two transactions changing two licenses of one customer
  -- serialise here, and the second reads the first's change instead of
  -- writing an array without it.
  perform from lic.customers as c
  where c.account_id = refresh_customer_licenses.account_id and c.id = any(customer_ids)
  order by c.id
  for update;
  update lic.customers as c
  set licenses = private.customer_licenses(c.account_id, c.id)
  where c.account_id = refresh_customer_licenses.account_id and c.id = any(customer_ids);
end;
$$;
comment on function private.refresh_customer_licenses(uuid, uuid[]) is
'Recompute lic.customers.licenses of the given customers of an account.';

create or replace function private.tg_licenses__customer_licenses()
returns trigger
language plpgsql
as $$
declare
  v_license lic.licenses := case when tg_op = 'DELETE' then old else new end;
  v_customer_ids uuid [];
begin
  -- The license's customer before and after, and every seat holder.
  select array_agg(u.customer_id) into v_customer_ids
  from lic.license_users as u
  where u.account_id = v_license.account_id and u.license_id = v_license.id;
  v_customer_ids := v_customer_ids || v_license.customer_id;
  if tg_op = 'UPDATE' then
    v_customer_ids := v_customer_ids || old.customer_id;
  end if;
  perform private.refresh_customer_licenses(v_license.account_id, v_customer_ids);
  return null;
end;
$$;
comment on function private.tg_licenses__customer_licenses() is
'A license was made, removed, or changed in what a check reads: refresh its customers'' licenses.';

create or replace trigger licenses__customer_licenses
after insert or delete on lic.licenses
for each row execute function private.tg_licenses__customer_licenses();

create or replace trigger licenses__customer_licenses_update
after update on lic.licenses
for each row
when (
  old.status is distinct from new.status
  or old.expires_at is distinct from new.expires_at
  or old.grace_ends_at is distinct from new.grace_ends_at
  or old.entitlement_codes is distinct from new.entitlement_codes
  or old.customer_id is distinct from new.customer_id
)
execute function private.tg_licenses__customer_licenses();

create or replace function private.tg_license_users__customer_licenses()
returns trigger
language plpgsql
as $$
begin
  perform private.refresh_customer_licenses(
    coalesce(new.account_id, old.account_id),
    array[new.customer_id, old.customer_id]
  );
  return null;
end;
$$;
comment on function private.tg_license_users__customer_licenses() is
'A seat was given, taken away or moved: refresh the licenses of the customers concerned.';

create or replace trigger license_users__customer_licenses
after insert or delete or update of customer_id on lic.license_users
for each row execute function private.tg_license_users__customer_licenses();

-- The one rule behind every customer-level entitlement answer: the check
-- (api.check_entitlement by customer) and the snapshots the SDK evaluates
-- locally (functions/59_entitlement_feed.sql) both call it, so they cannot
-- disagree. licenses null: no such customer.
create or replace function private.entitlement_decision(
  licenses lic.customer_license[],
  entitlement text,
  at timestamptz
)
returns lic.entitlement_decision
language plpgsql
immutable
as $$
declare
  v_license lic.customer_license;
  v_end timestamptz;
  v_in_use boolean := false;
  v_endless boolean := false;
  v_last_end timestamptz;
begin
  if licenses is null then
    return row(false, 'CUSTOMER_NOT_FOUND', null, null)::lic.entitlement_decision;
  end if;
  -- Oldest first (the array's order): the first license in use that grants
  -- the entitlement answers, until it stops being in use.
  foreach v_license in array licenses loop
    if private.effective_status(v_license.status, v_license.expires_at, v_license.grace_ends_at, at)
      in ('active', 'past_due') then
      v_end := private.in_use_until(v_license.status, v_license.expires_at, v_license.grace_ends_at);
      if entitlement = any(v_license.entitlement_codes) then
        return row(true, 'ENTITLED', v_license.license_id, v_end)::lic.entitlement_decision;
      end if;
      v_in_use := true;
      v_endless := v_endless or v_end is null;
      v_last_end := greatest(v_last_end, v_end);
    end if;
  end loop;
  if v_in_use then
    -- Until the last license in use ends, then NO_VALID_LICENSE.
    return row(false, 'NOT_ENTITLED', null, case when not v_endless then v_last_end end)::lic.entitlement_decision;
  end if;
  return row(false, 'NO_VALID_LICENSE', null, null)::lic.entitlement_decision;
end;
$$;
comment on function private.entitlement_decision(lic.customer_license[], text, timestamptz) is
'Whether a customer with these licenses (lic.customers.licenses; null: no such customer) has an entitlement at '
'an instant: ENTITLED (the oldest license in use that grants it), NOT_ENTITLED, NO_VALID_LICENSE or '
'CUSTOMER_NOT_FOUND, and until when that answer holds without a write (null: no limit). A null entitlement '
'gets the answer of every code no license in use grants.';

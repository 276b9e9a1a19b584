-- Team seats: the customers who may use a license, within its policy's
-- max_users. The license's own customer holds the owner seat (made by
-- api.create_license) and keeps it. Adds lock the license row, so seats are
-- counted exactly under concurrency.

create or replace function private.license_user_view(u lic.license_users)
returns api.license_user
language sql
stable
as $$
  select row(u.license_id, u.customer_id, c.email, c.name, u.role, u.created_at)::api.license_user
  from lic.customers as c
  where c.account_id = u.account_id and c.id = u.customer_id;
$$;
comment on function private.license_user_view(lic.license_users) is
'The public shape of a seat, with its customer''s email and name.';

create or replace function api.add_license_user(
  license_id uuid,
  customer_id uuid default null,
  email text default null,
  role text default 'member'
)
returns api.license_user
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_license lic.licenses;
  v_policy lic.license_policies;
  v_customer lic.customers;
  v_seat lic.license_users;
  v_seats integer;
  v_max_users integer;
  v_view api.license_user;
begin
  perform private.require_exactly_one(
    array['customer_id', 'email'], array[customer_id is not null, email is not null]
  );
  if role is null or role not in ('owner', 'member') then
    raise exception using errcode = 'LINVL', column = 'role', message = 'role must be "owner" or "member"';
  end if;
  if email is not null and (email !~ '^[^@\s]+@[^@\s]+$' or length(email) > 320) then
    raise exception using errcode = 'LINVL', column = 'email', message = 'email is not a valid address';
  end if;
  v_license := private.locked_license(add_license_user.license_id);
  if customer_id is not null then
    select c.* into v_customer
    from lic.customers as c
    where c.account_id = v_account_id and c.id = add_license_user.customer_id;
    if not found then
      raise exception using errcode = 'LNTFD', column = 'customer_id', message = 'customer not found';
    end if;
  else
    -- The oldest customer with this address, case-insensitively.
    select c.* into v_customer
    from lic.customers as c
    where c.account_id = v_account_id and lower(c.email) = lower(add_license_user.email)
    order by c.id
    limit 1;
  end if;
  if v_customer.id is not null then
    select u.* into v_seat
    from lic.license_users as u
    where u.account_id = v_account_id and u.license_id = v_license.id and u.customer_id = v_customer.id;
    if found then
      return private.license_user_view(v_seat);
    end if;
  end if;
  select p.* into v_policy
  from lic.license_policies as p
  where p.account_id = v_account_id and p.id = v_license.policy_id;
  -- Seats bought through Stripe replace the policy's max_users.
  v_max_users := coalesce(v_license.seats, v_policy.max_users);
  if v_max_users is not null then
    select count(*) into v_seats
    from lic.license_users as u
    where u.account_id = v_account_id and u.license_id = v_license.id;
    if v_seats >= v_max_users then
      raise exception using errcode = 'LSTAT', column = 'license_id',
        message = format('the license allows %s users; remove one first', v_max_users);
    end if;
  end if;
  if v_customer.id is null then
    insert into lic.customers (account_id, email)
    values (v_account_id, add_license_user.email)
    returning * into v_customer;
    perform private.emit_event(v_account_id, 'customer.created', to_jsonb(private.customer_view(v_customer)));
  end if;
  insert into lic.license_users (account_id, license_id, customer_id, role)
  values (v_account_id, v_license.id, v_customer.id, add_license_user.role)
  returning * into v_seat;
  v_view := private.license_user_view(v_seat);
  perform private.emit_event(v_account_id, 'license.user_added', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.add_license_user(uuid, uuid, text, text) is
'Give a customer a seat on a license, by customer_id or by email (the account''s customer with that address, '
'case-insensitively, or a new one: customer.created), within the policy''s max_users. A customer who already has '
'a seat gets it back unchanged. Errors: LNTFD (404), LSTAT (409) no seat left, LINVL (422).';

create or replace function api.list_license_users(
  license_id uuid,
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null
)
returns setof api.license_user
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
begin
  if not exists (
    select from lic.licenses as l where l.account_id = v_account_id and l.id = list_license_users.license_id
  ) then
    raise exception using errcode = 'LNTFD', column = 'license_id', message = 'license not found';
  end if;
  -- Keyset over the primary key (account_id, license_id, customer_id): the
  -- cursors are customer ids.
  if ending_before is null then
    return query
    select (private.license_user_view(u)).*
    from lic.license_users as u
    where
      u.account_id = v_account_id and u.license_id = list_license_users.license_id
      and (starting_after is null or u.customer_id < starting_after)
    order by u.customer_id desc
    limit private.page_rows(page_limit, starting_after, ending_before);
  else
    return query
    select (p.seat).*
    from (
      select private.license_user_view(u) as seat, u.customer_id
      from lic.license_users as u
      where
        u.account_id = v_account_id and u.license_id = list_license_users.license_id
        and u.customer_id > ending_before
      order by u.customer_id
      limit private.page_rows(page_limit, starting_after, ending_before)
    ) as p
    order by p.customer_id desc;
  end if;
end;
$$;
comment on function api.list_license_users(uuid, integer, uuid, uuid) is
'List a license''s seats by customer id, newest customer first, as a keyset page of up to page_limit + 1 rows '
'(the cursors are customer ids). Errors: LNTFD (404), LINVL (422).';

create or replace function api.remove_license_user(license_id uuid, customer_id uuid)
returns api.license_user
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_license lic.licenses := private.locked_license(remove_license_user.license_id);
  v_seat lic.license_users;
  v_view api.license_user;
begin
  select u.* into v_seat
  from lic.license_users as u
  where u.account_id = v_account_id and u.license_id = v_license.id and u.customer_id = remove_license_user.customer_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'customer_id',
      message = 'this customer has no seat on the license';
  end if;
  if v_seat.customer_id = v_license.customer_id then
    raise exception using errcode = 'LSTAT', column = 'customer_id',
      message = 'the license''s customer holds the owner seat, which cannot be removed';
  end if;
  v_view := private.license_user_view(v_seat);
  delete from lic.license_users as u
  where u.account_id = v_account_id and u.license_id = v_seat.license_id and u.customer_id = v_seat.customer_id;
  perform private.emit_event(v_account_id, 'license.user_removed', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.remove_license_user(uuid, uuid) is
'Remove a customer''s seat from a license; returns the seat as it was. The seat of the license''s own customer '
'(the owner) cannot be removed. Errors: LNTFD (404), LSTAT (409).';

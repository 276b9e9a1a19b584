-- Customers of the tenant: email, name, external_id (the tenant's own user
-- id, unique in the account) and stripe_customer_id (unique too). Emails are
-- kept as given and compared case-insensitively.

create or replace function private.customer_view(c lic.customers)
returns api.customer
language sql
immutable
as $$
  select row(
    c.id, c.email, c.name, c.external_id, c.stripe_customer_id, c.metadata, c.created_at, c.updated_at
  )::api.customer;
$$;
comment on function private.customer_view(lic.customers) is 'The public shape of a customer.';

create or replace function private.check_customer(c lic.customers)
returns void
language plpgsql
immutable
as $$
begin
  if c.email !~ '^[^@\s]+@[^@\s]+$' or length(c.email) > 320 then
    raise exception using errcode = 'LINVL', column = 'email',
      message = 'email must look like an email address (local@domain, at most 320 characters)';
  end if;
  if length(c.name) not between 1 and 200 then
    raise exception using errcode = 'LINVL', column = 'name', message = 'name must be 1-200 characters';
  end if;
  if length(c.external_id) not between 1 and 200 then
    raise exception using errcode = 'LINVL', column = 'external_id',
      message = 'external_id must be 1-200 characters';
  end if;
  if c.stripe_customer_id !~ '^cus_[A-Za-z0-9]+$' then
    raise exception using errcode = 'LINVL', column = 'stripe_customer_id',
      message = 'stripe_customer_id must be a Stripe customer id (cus_…)';
  end if;
end;
$$;
comment on function private.check_customer(lic.customers) is
'Refuse a customer row with an invalid field, naming it. Errors: LINVL.';

create or replace function api.create_customer(
  email text default null,
  name text default null,
  external_id text default null,
  stripe_customer_id text default null,
  metadata jsonb default '{}'
)
returns api.customer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_customer lic.customers;
  v_view api.customer;
begin
  v_customer.email := email;
  v_customer.name := name;
  v_customer.external_id := external_id;
  v_customer.stripe_customer_id := stripe_customer_id;
  v_customer.metadata := private.write_metadata('{}', metadata);
  perform private.check_customer(v_customer);
  -- A duplicate external_id or stripe_customer_id fails on its unique
  -- constraint: 23505 (409 already_exists).
  insert into lic.customers as c (account_id, email, name, external_id, stripe_customer_id, metadata)
  values (
    v_account_id, v_customer.email, v_customer.name, v_customer.external_id, v_customer.stripe_customer_id,
    v_customer.metadata
  )
  returning c.* into v_customer;
  v_view := private.customer_view(v_customer);
  perform private.emit_event(v_account_id, 'customer.created', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.create_customer(text, text, text, text, jsonb) is
'Create a customer: email, name, external_id (the tenant''s own id for it, unique), stripe_customer_id '
'(cus_…, unique), metadata; all optional. Emits customer.created. Errors: LINVL (422), 23505 (409) duplicate '
'external_id or stripe_customer_id.';

create or replace function api.list_customers(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null,
  email text default null,
  external_id text default null
)
returns setof api.customer
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_account();
  if ending_before is null then
    return query
    select (private.customer_view(c)).*
    from lic.customers as c
    where
      (starting_after is null or c.id < starting_after)
      and (list_customers.email is null or lower(c.email) = lower(list_customers.email))
      and (list_customers.external_id is null or c.external_id = list_customers.external_id)
    order by c.id desc
    limit private.page_rows(page_limit, starting_after, ending_before);
  else
    return query
    select (l.customer).*
    from (
      select private.customer_view(c) as customer, c.id
      from lic.customers as c
      where
        c.id > ending_before
        and (list_customers.email is null or lower(c.email) = lower(list_customers.email))
        and (list_customers.external_id is null or c.external_id = list_customers.external_id)
      order by c.id
      limit private.page_rows(page_limit, starting_after, ending_before)
    ) as l
    order by l.id desc;
  end if;
end;
$$;
comment on function api.list_customers(integer, uuid, uuid, text, text) is
'List the account''s customers newest first, optionally only those with this email (case-insensitive) or '
'external_id, as a keyset page of up to page_limit + 1 rows. Errors: LINVL (422).';

create or replace function api.get_customer(customer_id uuid default null, external_id text default null)
returns api.customer
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_customer lic.customers;
begin
  perform private.require_account();
  perform private.require_exactly_one(
    array['customer_id', 'external_id'], array[customer_id is not null, external_id is not null]
  );
  select c.* into v_customer from lic.customers as c
  where c.id = get_customer.customer_id or c.external_id = get_customer.external_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = case when external_id is null then 'id' else 'external_id' end,
      message = 'customer not found';
  end if;
  return private.customer_view(v_customer);
end;
$$;
comment on function api.get_customer(uuid, text) is
'One customer of the account, by id or by external_id (exactly one). Errors: LINVL (422), LNTFD (404).';

create or replace function api.update_customer(
  customer_id uuid,
  email text default null,
  name text default null,
  external_id text default null,
  stripe_customer_id text default null,
  metadata jsonb default null,
  clear text[] default '{}'
)
returns api.customer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_old lic.customers;
  v_new lic.customers;
  v_view api.customer;
begin
  select c.* into v_old from lic.customers as c where c.id = update_customer.customer_id for update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'id', message = 'customer not found';
  end if;
  perform private.check_clear(
    clear,
    array['email', 'name', 'external_id', 'stripe_customer_id'],
    array_remove(array[
      case when email is not null then 'email' end,
      case when name is not null then 'name' end,
      case when external_id is not null then 'external_id' end,
      case when stripe_customer_id is not null then 'stripe_customer_id' end
    ], null)
  );
  v_new := v_old;
  v_new.email := case when 'email' = any(clear) then null else coalesce(email, v_old.email) end;
  v_new.name := case when 'name' = any(clear) then null else coalesce(name, v_old.name) end;
  v_new.external_id := case when 'external_id' = any(clear) then null else coalesce(external_id, v_old.external_id) end;
  v_new.stripe_customer_id := case
    when 'stripe_customer_id' = any(clear) then null else coalesce(stripe_customer_id, v_old.stripe_customer_id)
  end;
  v_new.metadata := private.write_metadata(v_old.metadata, metadata);
  perform private.check_customer(v_new);
  if to_jsonb(v_new) = to_jsonb(v_old) then
    return private.customer_view(v_old);
  end if;
  update lic.customers as c
  set
    email = v_new.email,
    name = v_new.name,
    external_id = v_new.external_id,
    stripe_customer_id = v_new.stripe_customer_id,
    metadata = v_new.metadata,
    updated_at = now()
  where c.account_id = v_account_id and c.id = v_old.id
  returning c.* into v_new;
  v_view := private.customer_view(v_new);
  perform private.emit_event(
    v_account_id, 'customer.updated', to_jsonb(v_view),
    private.previous_attributes(to_jsonb(private.customer_view(v_old)), to_jsonb(v_view))
  );
  return v_view;
end;
$$;
comment on function api.update_customer(uuid, text, text, text, text, jsonb, text[]) is
'Change a customer. A null argument leaves a field unchanged; clear names the fields to set to null (email, '
'name, external_id, stripe_customer_id); metadata replaces the whole object. Emits customer.updated when '
'something changed. Errors: LNTFD (404), LINVL (422), 23505 (409) external_id or stripe_customer_id taken.';

-- Entitlements: the features license policies (api.attach_entitlement) and
-- single licenses grant. An entitlement's code is what applications check,
-- so it is fixed at creation; name and metadata may change.

create or replace function private.entitlement_view(e lic.entitlements)
returns api.entitlement
language sql
immutable
as $$
  select row(e.id, e.code, e.name, e.metadata, e.created_at, e.updated_at)::api.entitlement;
$$;
comment on function private.entitlement_view(lic.entitlements) is 'The public shape of an entitlement.';

create or replace function private.check_entitlement(e lic.entitlements)
returns void
language plpgsql
immutable
as $$
begin
  if e.code is null or e.code !~ '^[a-z0-9][a-z0-9._:-]{0,63}$' then
    raise exception using errcode = 'LINVL', column = 'code',
      message = 'code must be 1-64 characters of a-z, 0-9, ".", "_", ":" or "-", starting with a letter or digit';
  end if;
  if e.name is null or length(e.name) not between 1 and 200 then
    raise exception using errcode = 'LINVL', column = 'name', message = 'name must be 1-200 characters';
  end if;
end;
$$;
comment on function private.check_entitlement(lic.entitlements) is
'Refuse an entitlement row with an invalid field, naming it. Errors: LINVL.';

create or replace function api.create_entitlement(code text, name text, metadata jsonb default '{}')
returns api.entitlement
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_entitlement lic.entitlements;
  v_view api.entitlement;
begin
  v_entitlement.code := code;
  v_entitlement.name := name;
  v_entitlement.metadata := private.write_metadata('{}', metadata);
  perform private.check_entitlement(v_entitlement);
  -- A duplicate code fails on the unique constraint: 23505 (409 already_exists).
  insert into lic.entitlements as e (account_id, code, name, metadata)
  values (v_account_id, v_entitlement.code, v_entitlement.name, v_entitlement.metadata)
  returning e.* into v_entitlement;
  v_view := private.entitlement_view(v_entitlement);
  perform private.emit_event(v_account_id, 'entitlement.created', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.create_entitlement(text, text, jsonb) is
'Create an entitlement: code (unique, a-z 0-9 . _ : -, fixed once made), name, metadata. Emits '
'entitlement.created. Errors: LINVL (422), 23505 (409) duplicate code.';

create or replace function api.list_entitlements(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null
)
returns setof api.entitlement
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_account();
  if ending_before is null then
    return query
    select (private.entitlement_view(e)).*
    from lic.entitlements as e
    where starting_after is null or e.id < starting_after
    order by e.id desc
    limit private.page_rows(page_limit, starting_after, ending_before);
  else
    return query
    select (l.entitlement).*
    from (
      select private.entitlement_view(e) as entitlement, e.id
      from lic.entitlements as e
      where e.id > ending_before
      order by e.id
      limit private.page_rows(page_limit, starting_after, ending_before)
    ) as l
    order by l.id desc;
  end if;
end;
$$;
comment on function api.list_entitlements(integer, uuid, uuid) is
'List the account''s entitlements newest first, as a keyset page of up to page_limit + 1 rows. '
'Errors: LINVL (422).';

create or replace function api.get_entitlement(entitlement_id uuid default null, code text default null)
returns api.entitlement
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_entitlement lic.entitlements;
begin
  perform private.require_account();
  perform private.require_exactly_one(
    array['entitlement_id', 'code'], array[entitlement_id is not null, code is not null]
  );
  select e.* into v_entitlement from lic.entitlements as e
  where e.id = get_entitlement.entitlement_id or e.code = get_entitlement.code;
  if not found then
    raise exception using errcode = 'LNTFD', column = case when code is null then 'id' else 'code' end,
      message = 'entitlement not found';
  end if;
  return private.entitlement_view(v_entitlement);
end;
$$;
comment on function api.get_entitlement(uuid, text) is
'One entitlement of the account, by id or by code (exactly one). Errors: LINVL (422), LNTFD (404).';

create or replace function api.update_entitlement(
  entitlement_id uuid,
  name text default null,
  metadata jsonb default null
)
returns api.entitlement
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_old lic.entitlements;
  v_new lic.entitlements;
  v_view api.entitlement;
begin
  select e.* into v_old from lic.entitlements as e where e.id = update_entitlement.entitlement_id for update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'id', message = 'entitlement not found';
  end if;
  v_new := v_old;
  v_new.name := coalesce(name, v_old.name);
  v_new.metadata := private.write_metadata(v_old.metadata, metadata);
  perform private.check_entitlement(v_new);
  if to_jsonb(v_new) = to_jsonb(v_old) then
    return private.entitlement_view(v_old);
  end if;
  update lic.entitlements as e
  set name = v_new.name, metadata = v_new.metadata, updated_at = now()
  where e.account_id = v_account_id and e.id = v_old.id
  returning e.* into v_new;
  v_view := private.entitlement_view(v_new);
  perform private.emit_event(
    v_account_id, 'entitlement.updated', to_jsonb(v_view),
    private.previous_attributes(to_jsonb(private.entitlement_view(v_old)), to_jsonb(v_view))
  );
  return v_view;
end;
$$;
comment on function api.update_entitlement(uuid, text, jsonb) is
'Change an entitlement''s name or metadata (its code is fixed); a null argument leaves a field unchanged and '
'metadata replaces the whole object. Emits entitlement.updated when something changed. Errors: LNTFD (404), '
'LINVL (422).';

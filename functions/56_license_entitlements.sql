-- A license's entitlements: its policy's, plus the license's own grants,
-- minus its revokes (DESIGN §3). private.effective_entitlement_codes is the
-- one definition of that set; lic.licenses.entitlement_codes keeps its result
-- per license (triggers below), which validation and checks read.

create or replace function private.effective_entitlement_codes(account_id uuid, license_id uuid, policy_id uuid)
returns text[]
language plpgsql
stable
as $$
declare
  v_codes text[];
begin
  -- One query on the hot path (validation): the policy's and the license's
  -- grants, less its revokes, each an index lookup on one license or policy.
  select coalesce(array_agg(e.code order by e.code collate "C"), '{}') into v_codes
  from lic.entitlements as e
  where
    e.account_id = effective_entitlement_codes.account_id
    and e.id in (
      select pe.entitlement_id from lic.policy_entitlements as pe
      where
        pe.account_id = effective_entitlement_codes.account_id
        and pe.policy_id = effective_entitlement_codes.policy_id
      union all
      select g.entitlement_id from lic.license_entitlements as g
      where
        g.account_id = effective_entitlement_codes.account_id and g.license_id = effective_entitlement_codes.license_id
        and g.effect = 'grant'
    )
    and not exists (
      select from lic.license_entitlements as r
      where
        r.account_id = effective_entitlement_codes.account_id and r.license_id = effective_entitlement_codes.license_id
        and r.entitlement_id = e.id and r.effect = 'revoke'
    );
  return v_codes;
end;
$$;
comment on function private.effective_entitlement_codes(uuid, uuid, uuid) is
'The codes of a license''s effective entitlements, sorted: its policy''s and its grants, less its revokes. '
'The one definition of that set.';

create or replace function private.effective_entitlements(account_id uuid, license_id uuid, policy_id uuid)
returns table (entitlement_id uuid, code text, name text, source text)
language plpgsql
stable
as $$
begin
  return query
  select
    e.id,
    e.code,
    e.name,
    case when g.effect = 'grant' then 'grant' else 'policy' end
  from lic.entitlements as e
  left join lic.license_entitlements as g
    on
      g.account_id = effective_entitlements.account_id
      and g.license_id = effective_entitlements.license_id
      and g.entitlement_id = e.id
  where
    e.account_id = effective_entitlements.account_id
    and e.code = any(private.effective_entitlement_codes(
      effective_entitlements.account_id, effective_entitlements.license_id, effective_entitlements.policy_id
    ))
  order by e.code collate "C";
end;
$$;
comment on function private.effective_entitlements(uuid, uuid, uuid) is
'A license''s effective entitlements (private.effective_entitlement_codes) with names, sorted by code; source '
'is grant when the license grants it itself, else policy.';

-- lic.licenses.entitlement_codes caches private.effective_entitlement_codes
-- for each license (sql/0008): every change to what feeds it refreshes it in
-- the same transaction, so reads never see it stale.
create or replace function private.refresh_entitlement_codes(account_id uuid, license_id uuid, policy_id uuid)
returns void
language plpgsql
volatile
as $$
begin
  if license_id is not null then
    update lic.licenses as l
    set entitlement_codes = private.effective_entitlement_codes(l.account_id, l.id, l.policy_id)
    where l.account_id = refresh_entitlement_codes.account_id and l.id = refresh_entitlement_codes.license_id;
  else
    update lic.licenses as l
    set entitlement_codes = private.effective_entitlement_codes(l.account_id, l.id, l.policy_id)
    where l.account_id = refresh_entitlement_codes.account_id and l.policy_id = refresh_entitlement_codes.policy_id;
  end if;
end;
$$;
comment on function private.refresh_entitlement_codes(uuid, uuid, uuid) is
'Recompute lic.licenses.entitlement_codes of one license, or of every license on a policy.';

create or replace function private.tg_licenses__entitlement_codes()
returns trigger
language plpgsql
as $$
begin
  new.entitlement_codes := private.effective_entitlement_codes(new.account_id, new.id, new.policy_id);
  return new;
end;
$$;
comment on function private.tg_licenses__entitlement_codes() is
'A new license, or one moved to another policy, gets its effective entitlement codes.';

create or replace trigger licenses__entitlement_codes
before insert or update of policy_id on lic.licenses
for each row execute function private.tg_licenses__entitlement_codes();

create or replace function private.tg_license_entitlements__entitlement_codes()
returns trigger
language plpgsql
as $$
begin
  perform private.refresh_entitlement_codes(
    coalesce(new.account_id, old.account_id), coalesce(new.license_id, old.license_id), null
  );
  return null;
end;
$$;
comment on function private.tg_license_entitlements__entitlement_codes() is
'A license''s override changed: refresh its effective entitlement codes.';

create or replace trigger license_entitlements__entitlement_codes
after insert or update or delete on lic.license_entitlements
for each row execute function private.tg_license_entitlements__entitlement_codes();

create or replace function private.tg_policy_entitlements__entitlement_codes()
returns trigger
language plpgsql
as $$
begin
  perform private.refresh_entitlement_codes(
    coalesce(new.account_id, old.account_id), null, coalesce(new.policy_id, old.policy_id)
  );
  return null;
end;
$$;
comment on function private.tg_policy_entitlements__entitlement_codes() is
'A policy''s entitlements changed: refresh the codes of every license on it.';

create or replace trigger policy_entitlements__entitlement_codes
after insert or update or delete on lic.policy_entitlements
for each row execute function private.tg_policy_entitlements__entitlement_codes();

create or replace function private.license_entitlement_rows(license lic.licenses)
returns setof api.license_entitlement
language sql
stable
as $$
  select e.code, e.name, e.source
  from private.effective_entitlements(license.account_id, license.id, license.policy_id) as e;
$$;
comment on function private.license_entitlement_rows(lic.licenses) is
'The public shape of a license''s effective entitlements, sorted by code.';

create or replace function api.list_license_entitlements(license_id uuid)
returns setof api.license_entitlement
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_license lic.licenses;
begin
  select l.* into v_license from lic.licenses as l
  where l.account_id = v_account_id and l.id = list_license_entitlements.license_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'license_id', message = 'license not found';
  end if;
  return query select * from private.license_entitlement_rows(v_license);
end;
$$;
comment on function api.list_license_entitlements(uuid) is
'A license''s effective entitlements (its policy''s, plus its grants, less its revokes), sorted by code, each '
'with its source: policy or grant. Errors: LNTFD (404).';

create or replace function private.change_license_override(
  license_id uuid,
  code text,
  effect text
)
returns setof api.license_entitlement
language plpgsql
volatile
as $$
declare
  v_license lic.licenses := private.lock_license(license_id);
  v_entitlement_id uuid;
  v_before text[] := private.effective_entitlement_codes(v_license.account_id, v_license.id, v_license.policy_id);
  v_after text[];
  v_changed integer;
begin
  select e.id into v_entitlement_id from lic.entitlements as e
  where e.account_id = v_license.account_id and e.code = change_license_override.code;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'code', message = 'entitlement not found';
  end if;
  if effect is null then
    delete from lic.license_entitlements as o
    where o.account_id = v_license.account_id and o.license_id = v_license.id and o.entitlement_id = v_entitlement_id;
  else
    insert into lic.license_entitlements (account_id, license_id, entitlement_id, effect)
    values (v_license.account_id, v_license.id, v_entitlement_id, change_license_override.effect)
    on conflict on constraint license_entitlements_pkey do update
      set effect = excluded.effect
      where license_entitlements.effect is distinct from excluded.effect;
  end if;
  get diagnostics v_changed = row_count;
  if v_changed > 0 then
    v_after := private.effective_entitlement_codes(v_license.account_id, v_license.id, v_license.policy_id);
    perform private.emit_event(
      v_license.account_id, 'license.entitlements_updated',
      to_jsonb(private.license_view(v_license)) || jsonb_build_object('entitlements', v_after),
      case when v_after is distinct from v_before then jsonb_build_object('entitlements', v_before) else '{}' end
    );
  end if;
  return query select * from private.license_entitlement_rows(v_license);
end;
$$;
comment on function private.change_license_override(uuid, text, text) is
'Set (grant or revoke) or, with a null effect, remove a license''s override of one entitlement; emits '
'license.entitlements_updated when the override changed. Errors: LNTFD.';

create or replace function api.set_license_entitlement(license_id uuid, code text, effect text)
returns setof api.license_entitlement
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_account(member_role => 'admin');
  if effect is null or effect not in ('grant', 'revoke') then
    raise exception using errcode = 'LINVL', column = 'effect', message = 'effect must be "grant" or "revoke"';
  end if;
  return query select * from private.change_license_override(license_id, code, effect);
end;
$$;
comment on function api.set_license_entitlement(uuid, text, text) is
'Override one entitlement (by code) on a license: grant adds it whatever the policy says, revoke removes it. '
'Setting it again replaces the effect. Returns the license''s effective entitlements; emits '
'license.entitlements_updated (data.object carries the effective codes, previous_attributes the old ones). '
'Errors: LNTFD (404) license or entitlement, LINVL (422) effect.';

create or replace function api.remove_license_entitlement(license_id uuid, code text)
returns setof api.license_entitlement
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_account(member_role => 'admin');
  return query select * from private.change_license_override(license_id, code, null);
end;
$$;
comment on function api.remove_license_entitlement(uuid, text) is
'Remove a license''s override of one entitlement, so its policy decides again (no override: nothing changes). '
'Returns the license''s effective entitlements; emits license.entitlements_updated when an override was removed. '
'Errors: LNTFD (404) license or entitlement.';

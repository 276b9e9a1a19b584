-- Machines: activation by fingerprint within the license policy's
-- max_machines, heartbeats, deactivation and transfer between two licenses of
-- one customer.
--
-- Counting is exact under concurrency: every path that adds a machine to a
-- license (activation, transfer in) first locks that license's row, so adds
-- to one license run one at a time. A machine silent for longer than its
-- policy's heartbeat_interval is dead: it does not validate, and the next add
-- to its license deletes it (machine.deactivated) before counting. So every
-- machine on a license was alive and within the limit when the last machine
-- was added, and a dead machine that heartbeats again cannot push the license
-- past its limit.

create or replace function private.machine_view(m lic.machines, heartbeat_interval interval)
returns api.machine
language sql
stable
as $$
  select row(
    m.id, m.license_id, m.fingerprint, m.name, m.platform, m.metadata,
    private.machine_alive(m.last_heartbeat_at, heartbeat_interval),
    m.last_heartbeat_at, m.created_at, m.updated_at
  )::api.machine;
$$;
comment on function private.machine_view(lic.machines, interval) is
'The public shape of a machine, given its policy''s heartbeat interval.';

create or replace function private.machine_view(m lic.machines)
returns api.machine
language sql
stable
as $$
  select private.machine_view(m, p.heartbeat_interval)
  from lic.licenses as l
  inner join lic.license_policies as p on p.account_id = l.account_id and p.id = l.policy_id
  where l.account_id = m.account_id and l.id = m.license_id;
$$;
comment on function private.machine_view(lic.machines) is 'The public shape of a machine.';

-- The license row locked against concurrent adds of machines and seats.
-- FOR NO KEY UPDATE: it serialises adds (and status changes, which lock the
-- row FOR UPDATE) without blocking inserts that merely reference the license.
create or replace function private.locked_license(license_id uuid, param text default 'license_id')
returns lic.licenses
language plpgsql
volatile
as $$
declare
  v_license lic.licenses;
begin
  select l.* into v_license
  from lic.licenses as l
  where l.account_id = private.current_account_id() and l.id = locked_license.license_id
  for no key update;
  if not found then
    raise exception using errcode = 'LNTFD', column = param, message = 'license not found';
  end if;
  return v_license;
end;
$$;
comment on function private.locked_license(uuid, text) is
'The license with this id, locked FOR NO KEY UPDATE until the end of the transaction. Errors: LNTFD.';

create or replace function private.require_usable_license(l lic.licenses, param text default 'license_id')
returns void
language plpgsql
stable
as $$
declare
  v_status text := private.effective_status(l.status, l.expires_at, l.grace_ends_at);
begin
  if v_status not in ('active', 'past_due') then
    raise exception using errcode = 'LSTAT', column = param,
      message = format('the license is %s; machines can only be added to an active license', v_status);
  end if;
end;
$$;
comment on function private.require_usable_license(lic.licenses, text) is
'Refuse with LSTAT unless the license is usable now (effective status active or past_due within its grace period).';

-- Called with the license locked (private.locked_license): deletes its dead
-- machines, then refuses when the live ones already fill max_machines.
create or replace function private.make_room_for_machine(l lic.licenses, p lic.license_policies)
returns void
language plpgsql
volatile
as $$
declare
  v_dead lic.machines;
  v_alive integer;
begin
  if p.heartbeat_interval is not null then
    for v_dead in
      delete from lic.machines as m
      where
        m.account_id = l.account_id and m.license_id = l.id
        and not private.machine_alive(m.last_heartbeat_at, p.heartbeat_interval)
      returning m.*
    loop
      perform private.emit_event(
        l.account_id, 'machine.deactivated', to_jsonb(private.machine_view(v_dead, p.heartbeat_interval))
      );
    end loop;
  end if;
  if p.max_machines is not null then
    select count(*) into v_alive from lic.machines as m where m.account_id = l.account_id and m.license_id = l.id;
    if v_alive >= p.max_machines then
      raise exception using errcode = 'LSTAT', column = 'license_id',
        message = format('the license allows %s machines; deactivate one first', p.max_machines);
    end if;
  end if;
end;
$$;
comment on function private.make_room_for_machine(lic.licenses, lic.license_policies) is
'Delete a locked license''s dead machines (machine.deactivated) and refuse with LSTAT when the live ones fill '
'max_machines.';

create or replace function private.find_machine(machine_id uuid, lock boolean default false)
returns lic.machines
language plpgsql
volatile
as $$
declare
  v_machine lic.machines;
begin
  if lock then
    select m.* into v_machine from lic.machines as m
    where m.account_id = private.current_account_id() and m.id = find_machine.machine_id
    for update;
  else
    select m.* into v_machine from lic.machines as m
    where m.account_id = private.current_account_id() and m.id = find_machine.machine_id;
  end if;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'machine_id', message = 'machine not found';
  end if;
  return v_machine;
end;
$$;
comment on function private.find_machine(uuid, boolean) is
'The machine with this id, optionally locked FOR UPDATE. Errors: LNTFD.';

create or replace function api.activate_machine(
  license_id uuid,
  fingerprint text,
  name text default null,
  platform text default null,
  metadata jsonb default '{}'
)
returns api.machine
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_license lic.licenses;
  v_policy lic.license_policies;
  v_machine lic.machines;
  v_view api.machine;
begin
  if fingerprint is null or length(fingerprint) not between 1 and 500 then
    raise exception using errcode = 'LINVL', column = 'fingerprint',
      message = 'fingerprint must be 1 to 500 characters';
  end if;
  v_license := private.locked_license(activate_machine.license_id);
  perform private.require_usable_license(v_license);
  select p.* into v_policy
  from lic.license_policies as p
  where p.account_id = v_account_id and p.id = v_license.policy_id;
  -- The same fingerprint again: the machine it already is, heard from now.
  update lic.machines as m
  set last_heartbeat_at = now()
  where m.account_id = v_account_id and m.license_id = v_license.id and m.fingerprint = activate_machine.fingerprint
  returning m.* into v_machine;
  if found then
    return private.machine_view(v_machine, v_policy.heartbeat_interval);
  end if;
  perform private.make_room_for_machine(v_license, v_policy);
  insert into lic.machines (account_id, license_id, fingerprint, name, platform, metadata)
  values (
    v_account_id, v_license.id, activate_machine.fingerprint, activate_machine.name, activate_machine.platform,
    private.write_metadata('{}', activate_machine.metadata)
  )
  returning * into v_machine;
  v_view := private.machine_view(v_machine, v_policy.heartbeat_interval);
  perform private.emit_event(v_account_id, 'machine.activated', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.activate_machine(uuid, text, text, text, jsonb) is
'Activate a machine (by fingerprint) on a usable license within its policy''s max_machines; machines silent past '
'the heartbeat interval are deactivated to make room. Activating a fingerprint already on the license returns '
'that machine and counts as a heartbeat. Errors: LNTFD (404), LSTAT (409) license not usable or full, LINVL (422).';

create or replace function api.list_machines(
  license_id uuid,
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null
)
returns setof api.machine
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_interval interval;
begin
  select p.heartbeat_interval into v_interval
  from lic.licenses as l
  inner join lic.license_policies as p on p.account_id = l.account_id and p.id = l.policy_id
  where l.account_id = v_account_id and l.id = list_machines.license_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'license_id', message = 'license not found';
  end if;
  if ending_before is null then
    return query
    select (private.machine_view(m, v_interval)).*
    from lic.machines as m
    where
      m.account_id = v_account_id and m.license_id = list_machines.license_id
      and (starting_after is null or m.id < starting_after)
    order by m.id desc
    limit private.page_rows(page_limit, starting_after, ending_before);
  else
    return query
    select (p.machine).*
    from (
      select private.machine_view(m, v_interval) as machine, m.id
      from lic.machines as m
      where m.account_id = v_account_id and m.license_id = list_machines.license_id and m.id > ending_before
      order by m.id
      limit private.page_rows(page_limit, starting_after, ending_before)
    ) as p
    order by p.id desc;
  end if;
end;
$$;
comment on function api.list_machines(uuid, integer, uuid, uuid) is
'List a license''s machines newest first, as a keyset page of up to page_limit + 1 rows. Errors: LNTFD (404), '
'LINVL (422).';

create or replace function api.get_machine(machine_id uuid)
returns api.machine
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_account();
  return private.machine_view(private.find_machine(machine_id));
end;
$$;
comment on function api.get_machine(uuid) is 'One machine of the account. Errors: LNTFD (404).';

create or replace function api.heartbeat_machine(machine_id uuid)
returns api.machine
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_machine lic.machines;
begin
  -- No event: heartbeats are frequent and change nothing but this timestamp.
  update lic.machines as m
  set last_heartbeat_at = now()
  where m.account_id = v_account_id and m.id = heartbeat_machine.machine_id
  returning m.* into v_machine;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'machine_id', message = 'machine not found';
  end if;
  return private.machine_view(v_machine);
end;
$$;
comment on function api.heartbeat_machine(uuid) is
'Record that a machine is alive now (no event). A machine deactivated for silence is gone: activate it again. '
'Errors: LNTFD (404).';

create or replace function api.deactivate_machine(machine_id uuid)
returns api.machine
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_machine lic.machines := private.find_machine(machine_id, lock => true);
  v_view api.machine := private.machine_view(v_machine);
begin
  delete from lic.machines as m where m.account_id = v_account_id and m.id = v_machine.id;
  perform private.emit_event(v_account_id, 'machine.deactivated', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.deactivate_machine(uuid) is
'Deactivate (delete) a machine, freeing its place on the license; returns it as it was. Errors: LNTFD (404).';

create or replace function private.move_machine(machine lic.machines, target lic.licenses)
returns api.machine
language plpgsql
volatile
as $$
declare
  v_machine lic.machines := machine;
  v_policy lic.license_policies;
  v_before api.machine := private.machine_view(machine);
  v_after api.machine;
begin
  -- Whoever may move it (a key of the account, or the customer in the
  -- portal), the target must take it: usable, room within max_machines
  -- (silent machines make room), and not already holding its fingerprint.
  perform private.require_usable_license(target);
  select p.* into v_policy
  from lic.license_policies as p
  where p.account_id = target.account_id and p.id = target.policy_id;
  perform private.make_room_for_machine(target, v_policy);
  if exists (
    select from lic.machines as m
    where m.account_id = target.account_id and m.license_id = target.id and m.fingerprint = machine.fingerprint
  ) then
    raise exception using errcode = 'LSTAT', column = 'license_id',
      message = 'a machine with this fingerprint is already activated on that license';
  end if;
  update lic.machines as m
  set license_id = target.id, updated_at = now()
  where m.account_id = target.account_id and m.id = machine.id
  returning m.* into v_machine;
  v_after := private.machine_view(v_machine, v_policy.heartbeat_interval);
  perform private.emit_event(
    target.account_id, 'machine.transferred', to_jsonb(v_after),
    private.previous_attributes(to_jsonb(v_before), to_jsonb(v_after))
  );
  return v_after;
end;
$$;
comment on function private.move_machine(lic.machines, lic.licenses) is
'Move a machine to a license (locked by the caller) that can take it: usable, within max_machines, without that '
'fingerprint; emits machine.transferred. Errors: LSTAT.';

create or replace function api.transfer_machine(machine_id uuid, license_id uuid)
returns api.machine
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_machine lic.machines := private.find_machine(machine_id, lock => true);
  v_source lic.licenses;
  v_target lic.licenses;
begin
  if v_machine.license_id = transfer_machine.license_id then
    return private.machine_view(v_machine);
  end if;
  v_target := private.locked_license(transfer_machine.license_id);
  select l.* into v_source from lic.licenses as l where l.account_id = v_account_id and l.id = v_machine.license_id;
  if v_source.customer_id is null or v_target.customer_id is distinct from v_source.customer_id then
    raise exception using errcode = 'LSTAT', column = 'license_id',
      message = 'a machine can only move to another license of the same customer';
  end if;
  return private.move_machine(v_machine, v_target);
end;
$$;
comment on function api.transfer_machine(uuid, uuid) is
'Move a machine to another usable license of the same customer, within that license''s max_machines (the '
'machine''s current license is a no-op). Errors: LNTFD (404), LSTAT (409).';

-- The event outbox. Every state change calls private.emit_event in its own
-- transaction, so an event exists exactly when its change committed.

create or replace function private.emit_event(
  account_id uuid,
  type text,
  object jsonb,
  previous_attributes jsonb default null
)
returns uuid
language plpgsql
volatile
as $$
declare
  -- The id is made here, not read back with RETURNING, so writers with
  -- INSERT alone (the worker, as lic_maint) can emit too.
  v_id uuid := private.uuid_v7();
  -- Who did it, for the audit log: the verified context's principal (a key,
  -- agent, member or portal session), nothing for the worker's sweeps.
  v_context record := private.current_context();
begin
  insert into lic.events (account_id, id, type, object, previous_attributes, actor_kind, actor_id)
  values (
    emit_event.account_id, v_id, emit_event.type, emit_event.object, emit_event.previous_attributes,
    v_context.kind, v_context.principal_id
  );
  return v_id;
end;
$$;
comment on function private.emit_event(uuid, text, jsonb, jsonb) is
'Record an event (type, data.object, data.previous_attributes) for an account in the current transaction.';

create or replace function private.previous_attributes(before jsonb, after jsonb)
returns jsonb
language sql
immutable
parallel safe
as $$
  -- Stripe's data.previous_attributes: the old values of the keys that changed.
  select coalesce(jsonb_object_agg(b.key, b.value), '{}'::jsonb)
  from jsonb_each(before) as b
  where b.value is distinct from after -> b.key
    and b.key not in ('updated_at', 'effective_status');
$$;
comment on function private.previous_attributes(jsonb, jsonb) is
'The old values of the top-level keys whose values differ between before and after (timestamps of change aside).';

create or replace function private.event_view(e lic.events)
returns api.event
language sql
immutable
as $$
  select row(
    e.id, e.type, e.created_at,
    jsonb_build_object('object', e.object, 'previous_attributes', e.previous_attributes)
  )::api.event;
$$;
comment on function private.event_view(lic.events) is 'The public shape of an event.';

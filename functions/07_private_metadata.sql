-- Metadata, Stripe-style and capped (decision 58): every api function that
-- writes a resource's metadata computes it here. The caps bound what a write
-- stores and copies into events and webhook payloads; they apply to what a
-- write leaves, so a row stored over them before they existed stays as it is
-- until its metadata is written again. Stripe's own metadata
-- (lic.stripe_subscriptions) is Stripe's and never passes through here.

create or replace function private.write_metadata(current jsonb, changes jsonb, merge boolean default false)
returns jsonb
language plpgsql
immutable
as $$
declare
  v_result jsonb;
  v_count integer;
  v_long_key text;
  v_long_value text;
begin
  if changes is null then
    return current;
  end if;
  if jsonb_typeof(changes) <> 'object' then
    raise exception using errcode = 'LINVL', column = 'metadata', message = 'metadata must be a JSON object';
  end if;
  v_result := case
    -- Stripe's metadata update: the given keys are set, a key given as null
    -- is removed, the others are kept.
    when merge then (current || changes) - array(select c.key from jsonb_each(changes) as c where c.value = 'null')
    else changes
  end;
  -- One pass over the keys. A string counts its characters; any other value
  -- its JSON text, so numbers, booleans, arrays and objects stay as bounded
  -- as strings.
  select
    count(*),
    min(r.key) filter (where length(r.key) > 40),
    min(r.key) filter (
      where length(case when jsonb_typeof(r.value) = 'string' then r.value #>> '{}' else r.value::text end) > 500
    )
  into v_count, v_long_key, v_long_value
  from jsonb_each(v_result) as r;
  if v_count > 50 then
    raise exception using errcode = 'LINVL', column = 'metadata',
      message = format('metadata may have at most 50 keys (this has %s)', v_count);
  end if;
  if v_long_key is not null then
    raise exception using errcode = 'LINVL', column = 'metadata',
      message = format('metadata key "%s…" is longer than 40 characters', left(v_long_key, 40));
  end if;
  if v_long_value is not null then
    raise exception using errcode = 'LINVL', column = 'metadata',
      message = format('the value of metadata key "%s" is longer than 500 characters', v_long_value);
  end if;
  return v_result;
end;
$$;
comment on function private.write_metadata(jsonb, jsonb, boolean) is
'The metadata a write leaves: current when changes is null, else changes (or, with merge, current with changes'' '
'keys set and those given as null removed), refused unless a JSON object of at most 50 keys of at most 40 '
'characters whose values are at most 500 characters (a string''s text, any other value''s JSON). Errors: LINVL.';

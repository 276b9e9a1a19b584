-- A checked batch of usage events as api.ingest_events passes it between its
-- statements: an array of this type instead of a jsonb array, so each event
-- is built once and read back without being parsed again (decision 41).

create type private.ingest_event as (
  index integer,
  id text,
  meter_id uuid,
  agent_id uuid,
  license_id uuid,
  subject_key text,
  quantity numeric,
  occurred_at timestamptz,
  properties jsonb,
  unique_value text,
  code text
);
comment on type private.ingest_event is
'One event of an ingest batch after its checks: its position, its columns, the value a unique_count meter '
'counts, and the code of its first failing check (null when it passed).';

-- Its predecessor read the batch from jsonb.
drop function if exists private.ingest_rows(jsonb, boolean);

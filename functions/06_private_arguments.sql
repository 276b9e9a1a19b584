-- Functions that find one object by one of several identifiers (id or code,
-- id or key, …) all check their arguments here.

create or replace function private.require_exactly_one(names text[], given boolean[])
returns void
language plpgsql
immutable
parallel safe
as $$
begin
  -- An expression, not a query: this runs in every check and validation.
  if coalesce(pg_catalog.cardinality(pg_catalog.array_positions(given, true)), 0) <> 1 then
    raise exception using errcode = 'LINVL', column = names[1],
      message = format('give exactly one of %s', array_to_string(names, ', '));
  end if;
end;
$$;
comment on function private.require_exactly_one(text[], boolean[]) is
'Raise LINVL unless exactly one of the named arguments was given (given[i] says whether names[i] was).';

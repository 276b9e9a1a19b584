-- Keyset pagination, shared by every list function: they take page_limit,
-- starting_after and ending_before, walk the primary key away from the cursor
-- and fetch private.page_rows(page_limit) rows — one past the page, which
-- only says that more exist.

create or replace function private.page_rows(page_limit integer, starting_after uuid, ending_before uuid)
returns integer
language plpgsql
immutable
parallel safe
as $$
begin
  if page_limit is null or page_limit not between 1 and 100 then
    raise exception using errcode = 'LINVL', column = 'limit', message = 'limit must be between 1 and 100';
  end if;
  if starting_after is not null and ending_before is not null then
    raise exception using errcode = 'LINVL', column = 'ending_before',
      message = 'give starting_after or ending_before, not both';
  end if;
  return page_limit + 1;
end;
$$;
comment on function private.page_rows(integer, uuid, uuid) is
'Rows a list function fetches for a page of page_limit (1-100) objects; refuses two cursors. Errors: LINVL.';

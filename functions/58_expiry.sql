-- The expiry sweep. Validation never waits for it (the effective status
-- counts an expiry as soon as it passes); the sweep makes the stored status
-- catch up, frees the tenant plan's active-license count through the usage
-- trigger and emits license.expired. It runs as lic_maint across tenants
-- through the __maint policies (policies/20_maint.sql).

-- The sweep at a given instant; worker.expire_licenses runs it at now(), and
-- tests that need another instant call it as lic_maint.
create or replace function private.expire_licenses(at timestamptz, batch_size integer)
returns integer
language plpgsql
volatile
as $$
declare
  v_count integer := 0;
  v_due record;
  v_license lic.licenses;
begin
  if batch_size is null or batch_size < 1 then
    raise exception using errcode = 'LINVL', column = 'batch_size', message = 'batch_size must be at least 1';
  end if;
  -- licenses__expires_at_idx holds exactly the candidates; rows another
  -- transaction holds (a sweep running beside this one, a license being
  -- renewed) are left for the next batch.
  for v_due in
    select l.account_id, l.id, l.status
    from lic.licenses as l
    where
      l.expires_at <= expire_licenses.at
      and l.expires_at is not null
      and l.status in ('active', 'past_due')
    order by l.expires_at
    limit batch_size
    for update skip locked
  loop
    update lic.licenses as l
    set status = 'expired', updated_at = now()
    where l.account_id = v_due.account_id and l.id = v_due.id
    returning l.* into v_license;
    perform private.emit_event(
      v_license.account_id, 'license.expired', to_jsonb(private.license_view(v_license)),
      jsonb_build_object('status', v_due.status)
    );
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

-- The clock is read here, not taken from the caller: an instant from
-- lic_worker could expire every tenant's licenses ahead of time.
create or replace function worker.expire_licenses(batch_size integer default 1000)
returns integer
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select private.expire_licenses(at => pg_catalog.now(), batch_size => expire_licenses.batch_size);
$$;
comment on function worker.expire_licenses(integer) is
'Mark up to batch_size active or past_due licenses whose expiry has passed as expired, across tenants, '
'oldest expiry first, skipping locked rows; emits license.expired for each. Returns how many it expired (call '
'again while it returns batch_size). Errors: LINVL batch_size below 1.';

-- Database logins bound to an account (decision 52): a tenant's backend that
-- calls the api functions over SQL can log in as lic_tenant_<account hex>
-- instead of authenticating with a key in every transaction. The role is a
-- member of lic_app (so it executes api functions and nothing else), and
-- private.login_account() reads its account from session_user, which only a
-- superuser can change. Operator actions (`licentric accounts login`): run as
-- the privileged login of migrate, which may create roles.

create or replace function private.account_login_role(account_id uuid)
returns text
language sql
immutable
parallel safe
as $$
  select 'lic_tenant_' || pg_catalog.replace(account_id::text, '-', '');
$$;
comment on function private.account_login_role(uuid) is
'The name of the database login bound to an account: lic_tenant_ and its id in 32 hex digits.';

create or replace function private.create_account_login(account_id uuid, password text)
returns text
language plpgsql
volatile
as $$
declare
  v_role text := private.account_login_role(account_id);
  v_db text := pg_catalog.current_database();
  v_setting text;
begin
  if not exists (select from lic.accounts as a where a.account_id = create_account_login.account_id) then
    raise exception using errcode = 'LNTFD', message = 'account not found', column = 'account_id';
  end if;
  -- password is a SCRAM verifier made by the client, so the clear password
  -- never reaches the server (or its log); a second call sets a new one.
  if exists (select from pg_catalog.pg_roles as r where r.rolname = v_role) then
    execute format('alter role %I login nosuperuser nobypassrls password %L', v_role, password);
  else
    execute format('create role %I login nobypassrls password %L in role lic_app', v_role, password);
  end if;
  execute format('grant connect on database %I to %I', v_db, v_role);
  -- The same timeouts as lic_app here (sql/0022), whatever an operator set them to.
  for v_setting in
    select c.setting
    from pg_catalog.pg_db_role_setting as s
    cross join unnest(s.setconfig) as c (setting)
    where s.setrole = 'lic_app'::regrole and s.setdatabase = (
      select d.oid from pg_catalog.pg_database as d where d.datname = v_db
    )
  loop
    execute format('alter role %I in database %I set %I = %L', v_role, v_db, split_part(v_setting, '=', 1),
      substr(v_setting, strpos(v_setting, '=') + 1));
  end loop;
  return v_role;
end;
$$;
comment on function private.create_account_login(uuid, text) is
'Create (or give a new password to) the database login bound to an account; password is a SCRAM verifier. '
'Returns the role name. Errors: LNTFD (404) for an unknown account.';

create or replace function private.drop_account_login(account_id uuid)
returns boolean
language plpgsql
volatile
as $$
declare
  v_role text := private.account_login_role(account_id);
begin
  if not exists (select from pg_catalog.pg_roles as r where r.rolname = v_role) then
    return false;
  end if;
  execute format('revoke connect on database %I from %I', pg_catalog.current_database(), v_role);
  execute format('alter role %I in database %I reset all', v_role, pg_catalog.current_database());
  execute format('drop role %I', v_role);
  return true;
end;
$$;
comment on function private.drop_account_login(uuid) is
'Drop the database login bound to an account (its sessions end at their next connection). Returns whether one '
'existed.';

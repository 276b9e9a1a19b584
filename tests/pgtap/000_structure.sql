-- The catalog contract (DESIGN §2). Every check is a query over the catalog,
-- so a new table, function or view is covered without editing this file; a
-- failing check lists the offending objects. The last section creates one
-- offender of each kind and asserts that the checks name it.
begin;
select plan(61);

-- Each check is a temporary view listing the objects that break one rule.
create temporary view tenant_tables as
select
  c.oid::regclass as tbl,
  a.attnum as account_attnum
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
left join pg_catalog.pg_attribute as a
  on c.oid = a.attrelid and a.attname = 'account_id' and not a.attisdropped
where
  n.nspname = 'lic'
  and c.relkind in ('r', 'p')
  and c.oid <> 'lic.tenant_plans'::regclass;

create temporary view routines as
select
  p.oid::regprocedure as fn,
  n.nspname as schema,
  p.proname as name,
  p.proowner,
  p.proacl,
  p.prosecdef,
  p.proconfig,
  p.prosrc
from pg_catalog.pg_proc as p
inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
where n.nspname in ('api', 'service', 'worker', 'private', 'lic');

create temporary view rls_offenders as
select c.oid::regclass::text as offender
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where
  n.nspname = 'lic'
  and c.relkind in ('r', 'p')
  and not (c.relrowsecurity and c.relforcerowsecurity);

create temporary view account_column_offenders as
select t.tbl::text as offender
from tenant_tables as t
where not exists (
  select from pg_catalog.pg_attribute as a
  where
    a.attrelid = t.tbl
    and a.attnum = t.account_attnum
    and a.atttypid = 'uuid'::regtype
    and a.attnotnull
);

create temporary view primary_key_offenders as
select t.tbl::text as offender
from tenant_tables as t
where not exists (
  select from pg_catalog.pg_index as i
  where i.indrelid = t.tbl and i.indisprimary and i.indkey[0] = t.account_attnum
);

create temporary view unique_offenders as
select i.indexrelid::regclass::text as offender
from tenant_tables as t
inner join pg_catalog.pg_index as i on t.tbl = i.indrelid
where
  i.indisunique
  and coalesce(t.account_attnum <> all(i.indkey::smallint[]), true);

-- A foreign key to another tenant table must pair account_id with
-- account_id; one to reference data (lic.tenant_plans) cannot.
create temporary view foreign_key_offenders as
select pg_describe_object('pg_catalog.pg_constraint'::regclass, con.oid, 0) as offender
from tenant_tables as t
inner join pg_catalog.pg_constraint as con on t.tbl = con.conrelid and con.contype = 'f'
inner join tenant_tables as r on con.confrelid = r.tbl
where not exists (
  select from unnest(con.conkey, con.confkey) as k (col, ref_col)
  where k.col = t.account_attnum and k.ref_col = r.account_attnum
);

-- A partition is reached through its parent, whose policies apply there; its
-- own policies are checked by partition_policy_offenders.
create temporary view tenant_policy_offenders as
select c.oid::regclass::text as offender
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where
  n.nspname = 'lic'
  and c.relkind in ('r', 'p')
  and not c.relispartition
  and exists (
    select from pg_catalog.pg_attribute as a
    where a.attrelid = c.oid and a.attname = 'account_id' and not a.attisdropped
  )
  and (
    not exists (
      select from pg_catalog.pg_policies as p
      where
        p.schemaname = 'lic'
        and p.tablename = c.relname
        and p.policyname = c.relname || '__all__tenant'
        and p.permissive = 'RESTRICTIVE'
        and p.cmd = 'ALL'
        and p.roles = '{lic_definer}'::name[]
        and p.qual = '(account_id = ( SELECT private.context_account_id() AS context_account_id))'
        and p.with_check = '(account_id = ( SELECT private.context_account_id() AS context_account_id))'
    )
    or not exists (
      select from pg_catalog.pg_policies as p
      where
        p.schemaname = 'lic'
        and p.tablename = c.relname
        and p.policyname = c.relname || '__select__reporting'
        and p.permissive = 'RESTRICTIVE'
        and p.cmd = 'SELECT'
        and p.roles = '{lic_reporting}'::name[]
        and p.qual = '(account_id = ( SELECT private.current_account_id() AS current_account_id))'
    )
  );

-- Matched on the stored expression trees: a top-level OR, or an IS NULL
-- test anywhere, is how "no context" turns into "every row".
create temporary view widening_policy_offenders as
select pg_describe_object('pg_catalog.pg_policy'::regclass, p.oid, 0) as offender
from pg_catalog.pg_policy as p
inner join pg_catalog.pg_class as c on p.polrelid = c.oid
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where
  n.nspname = 'lic'
  and (
    p.polqual::text ~ '^\{BOOLEXPR :boolop or '
    or p.polwithcheck::text ~ '^\{BOOLEXPR :boolop or '
    or p.polqual::text ~ ':nulltesttype 0 '
    or p.polwithcheck::text ~ ':nulltesttype 0 '
  );

create temporary view permissive_policy_offenders as
select pg_describe_object('pg_catalog.pg_policy'::regclass, p.oid, 0) as offender
from pg_catalog.pg_policy as p
inner join pg_catalog.pg_class as c on p.polrelid = c.oid
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where
  n.nspname = 'lic'
  and p.polpermissive
  and not c.relispartition
  and not p.polroles <@ array(
    select r.oid from pg_catalog.pg_roles as r
    where r.rolname in ('lic_definer', 'lic_reporting', 'lic_maint')
  );

-- Direct access to a partition is the partition upkeep's alone (decision 29):
-- its one policy lets the owner, lic_owner, move rows; any other role sees
-- none. Queries through the parent use the parent's policies.
create temporary view partition_policy_offenders as
select c.oid::regclass::text as offender
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where
  n.nspname = 'lic'
  and c.relkind in ('r', 'p')
  and c.relispartition
  and array(
    select
      p.policyname || ' ' || p.permissive || ' ' || p.cmd || ' ' || p.roles::text || ' '
      || p.qual || ' ' || p.with_check
    from pg_catalog.pg_policies as p
    where p.schemaname = 'lic' and p.tablename = c.relname
  ) <> array[c.relname || '__all__owner PERMISSIVE ALL {lic_owner} true true'];

-- Worker functions read the clock themselves: an instant or a span from the
-- caller let lic_worker drop every tenant's events or keys ahead of time.
create temporary view worker_clock_offenders as
select distinct r.fn::text as offender
from routines as r
inner join pg_catalog.pg_proc as p on r.fn = p.oid
cross join lateral unnest(p.proargnames[1:p.pronargs], p.proargtypes::oid[]) as a (name, typ)
inner join pg_catalog.pg_type as t on a.typ = t.oid
left join pg_catalog.pg_type as e on t.typelem = e.oid and t.typcategory = 'A'
where
  r.schema = 'worker'
  -- D: date and time types, T: interval; a domain has its base type's category.
  and (t.typcategory in ('D', 'T') or e.typcategory in ('D', 'T'))
  -- Two are data the worker reports, not the clock a job runs by: when it
  -- began sending an attempt, and how long it wants a claim leased.
  and (p.proname, a.name) not in (
    ('record_webhook_attempt', 'started_at'), ('claim_webhook_deliveries', 'lease')
  );

create temporary view search_path_offenders as
select r.fn::text as offender
from routines as r
where r.prosecdef and not coalesce('search_path=pg_catalog, pg_temp' = any(r.proconfig), false);

-- A null ACL means the default one, which lets PUBLIC execute.
create temporary view public_execute_offenders as
select r.fn::text as offender
from routines as r
where exists (
  select from aclexplode(coalesce(r.proacl, acldefault('f', r.proowner))) as acl
  where acl.grantee = 0 and acl.privilege_type = 'EXECUTE'
);

create temporary view lic_app_relation_offenders as
select c.oid::regclass::text as offender
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where
  n.nspname = 'lic'
  and case
    when c.relkind = 'S' then has_sequence_privilege('lic_app', c.oid, 'select, usage, update')
    when c.relkind in ('r', 'p', 'v', 'm', 'f')
      then
        has_table_privilege('lic_app', c.oid, 'select, insert, update, delete, truncate, references, trigger')
        or has_any_column_privilege('lic_app', c.oid, 'select, insert, update, references')
    else false
  end;

create temporary view comment_offenders as
select r.fn::text as offender
from routines as r
where r.schema = 'api' and obj_description(r.fn, 'pg_proc') is null
union all
select c.oid::regclass::text
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where n.nspname = 'api' and c.relkind in ('v', 'm') and obj_description(c.oid, 'pg_class') is null;

-- Every api function proves its caller's account itself: by a key in this
-- transaction (private.require_account, admitting key kinds only). Functions
-- that take the account from their caller (a Stripe delivery's URL, a portal
-- slug, a session hash) trust the web process and live in service, which no
-- tenant role may call (decision 50).
create temporary view require_account_offenders as
select r.fn::text as offender
from routines as r
where
  r.schema = 'api'
  and r.fn <> 'api.authenticate(text)'::regprocedure
  and (
    strpos(r.prosrc, 'private.require_account(') = 0
    or strpos(r.prosrc, 'private.stripe_begin(') > 0
    or strpos(r.prosrc, 'private.portal_begin(') > 0
    or strpos(r.prosrc, 'private.set_context(') > 0
    or strpos(r.prosrc, '''customer''') > 0
  );

-- A console member may call what a secret key may, within the role each
-- function declares (private.require_account's member_role, viewer by
-- default): every function that writes declares more than viewer, unless its
-- kinds leave secret out (then no member reaches it through the role check).
create temporary view member_role_offenders as
select r.fn::text as offender
from routines as r
inner join pg_catalog.pg_proc as p on r.fn = p.oid
where
  r.schema = 'api'
  and p.provolatile = 'v'
  and strpos(r.prosrc, 'private.require_account(') > 0
  and r.prosrc !~ 'private\.require_account\([^)]*member_role => ''(developer|admin|owner)''\)'
  and r.prosrc !~ 'private\.require_account\(kinds => array\[(?![^]]*''secret'')[^]]*\]';

-- A service function may also begin from a key (api.authenticate: the rate
-- limited authentication, decision 59). The one exception: a rate limit per
-- client address counts that address and reaches nothing else.
create temporary view service_offenders as
select r.fn::text as offender
from routines as r
where
  r.schema = 'service'
  and strpos(r.prosrc, 'private.stripe_begin(') = 0
  and strpos(r.prosrc, 'private.portal_begin(') = 0
  and strpos(r.prosrc, 'private.console_begin(') = 0
  and strpos(r.prosrc, 'private.require_account(kinds => array[''customer''])') = 0
  and strpos(r.prosrc, 'api.authenticate(') = 0
  and not (
    strpos(r.prosrc, 'private.count_client_request(') > 0
    and r.prosrc !~ '(lic|api|service)\.|private\.(?!count_client_request\(|raise_rate_limited\()'
  );

create temporary view security_invoker_offenders as
select c.oid::regclass::text as offender
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where
  n.nspname in ('lic', 'api')
  and c.relkind = 'v'
  and not exists (
    select from unnest(c.reloptions) as o (option)
    where o.option ~* '^security_invoker=(true|on|yes|1)$'
  );

create temporary view materialized_view_offenders as
select c.oid::regclass::text as offender
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where
  c.relkind = 'm'
  and n.nspname not in ('pg_catalog', 'information_schema')
  and (has_table_privilege('lic_app', c.oid, 'select') or has_table_privilege('lic_reporting', c.oid, 'select'));

-- The checks are not vacuous.
select cmp_ok(
  (select count(*) from tenant_tables)::integer, '>=', 3, 'the checks see the lic tenant tables'
);
select cmp_ok(
  (
    select count(*) from routines
    where prosecdef
  )::integer, '>=', 10, 'the checks see the definer functions'
);

-- Tables
select is_empty(
  $$
    select c.oid::regclass::text
    from pg_catalog.pg_class as c
    inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
    cross join (values ('lic_definer'), ('lic_app'), ('lic_maint'), ('lic_worker'), ('lic_reporting')) as r (role)
    where
      n.nspname = 'lic' and c.relispartition
      and pg_catalog.has_table_privilege(r.role, c.oid, 'select, insert, update, delete, truncate')
  $$,
  'no role but the owner reaches a partition directly (only through its parent, under its RLS)'
);
-- Tables
select is_empty(
  'table rls_offenders',
  'every lic table has row level security enabled and forced'
);
select is_empty(
  'table account_column_offenders',
  'every lic table but lic.tenant_plans has account_id uuid not null'
);
select is_empty(
  'table primary_key_offenders',
  'account_id is the first column of every tenant table''s primary key'
);
select is_empty(
  'table unique_offenders',
  'every unique constraint or index of a tenant table includes account_id'
);
select is_empty(
  'table foreign_key_offenders',
  'every foreign key between tenant tables pairs account_id with account_id'
);

-- Policies
select is_empty(
  'table tenant_policy_offenders',
  'every tenant table has the restrictive tenant policies: <table>__all__tenant (lic_definer) and '
  '<table>__select__reporting (lic_reporting, verified context)'
);
select is_empty(
  'table widening_policy_offenders',
  'no lic policy has a top-level OR or an IS NULL test'
);
select is_empty(
  'table permissive_policy_offenders',
  'permissive lic policies apply only to lic_definer, lic_reporting or lic_maint (partitions: below)'
);
select is_empty(
  'table partition_policy_offenders',
  'every partition''s one policy is <partition>__all__owner: the upkeep (lic_owner) moves rows, no other role reads any'
);

-- Functions
select is_empty(
  'table search_path_offenders',
  'every security definer function pins search_path = pg_catalog, pg_temp'
);
select is_empty(
  'table public_execute_offenders',
  'no api, worker, private or lic function is executable by PUBLIC'
);
select is_empty(
  'table worker_clock_offenders',
  'no worker function takes a date, time or interval: each reads the clock itself'
);
select functions_are(
  'api',
  array[
    'activate_machine', 'add_license_user',
    'archive_license_policy', 'attach_entitlement', 'authenticate',
    'cancel_license', 'change_license_policy', 'check_budget',
    'check_entitlement', 'claim_idempotency_key', 'create_agent',
    'create_api_key', 'create_customer', 'create_entitlement', 'create_license', 'create_license_policy',
    'create_stripe_mapping', 'deactivate_machine', 'delete_stripe_connection', 'delete_stripe_mapping',
    'detach_entitlement', 'entitlement_changes', 'entitlement_snapshot', 'get_account', 'get_agent', 'get_api_key',
    'get_current_agent', 'get_customer', 'get_entitlement', 'get_event', 'get_license', 'get_license_policy',
    'get_machine', 'get_stripe_api_key', 'get_stripe_event', 'heartbeat_machine',
    'ingest_events', 'list_agents', 'list_api_keys',
    'list_customers', 'list_entitlements',
    'list_events', 'list_license_entitlements', 'list_license_policies', 'list_license_users',
    'list_licenses', 'list_machines', 'list_stripe_connections', 'list_stripe_events', 'list_stripe_mappings',
    'put_stripe_connection', 'reinstate_license', 'remove_license_entitlement', 'reprocess_stripe_event',
    'remove_license_user', 'renew_license', 'revoke_agent', 'revoke_api_key', 'roll_agent_token',
    'roll_api_key', 'save_idempotent_response', 'set_license_entitlement', 'stripe_billing_portal_target',
    'suspend_license',
    'transfer_machine', 'update_agent', 'update_customer', 'update_entitlement', 'update_license',
    'update_license_policy', 'validate_license',
    'archive_meter', 'create_budget', 'create_meter', 'delete_budget', 'get_budget', 'get_meter', 'list_budgets',
    'list_meters', 'update_budget', 'update_meter', 'usage',
    'create_webhook_endpoint', 'delete_webhook_endpoint', 'get_webhook_delivery', 'get_webhook_endpoint',
    'list_webhook_deliveries', 'list_webhook_endpoints', 'replay_webhook_endpoint', 'retry_webhook_delivery',
    'rotate_webhook_endpoint_secret', 'send_test_webhook', 'update_webhook_endpoint', 'webhook_endpoint_secrets',
    'get_portal_settings', 'update_portal_settings',
    'get_member', 'invite_member', 'list_audit_events', 'list_member_invitations', 'list_member_sessions',
    'list_members', 'remove_member', 'revoke_member_invitation', 'revoke_member_session', 'transfer_ownership',
    'update_member_role',
    'get_console_overview', 'update_account',
    'ensure_signing_key', 'issue_license_file', 'list_signing_keys', 'rotate_signing_key'
  ],
  'the api schema exposes exactly the documented functions'
);
select functions_are(
  'service',
  array[
    'apply_stripe_event', 'apply_stripe_refetch', 'stripe_credentials',
    'authenticate_portal', 'confirm_portal_login', 'deactivate_portal_machine', 'get_portal_billing',
    'get_portal_license', 'invite_portal_member', 'list_portal_budgets',
    'list_portal_entitlements', 'list_portal_licenses', 'list_portal_machines', 'list_portal_members',
    'logout_portal', 'peek_portal_login', 'remove_portal_member', 'request_portal_login', 'resolve_portal',
    'transfer_portal_machine',
    'authenticate_request', 'count_failed_request', 'limit_client', 'limit_stripe_deliveries',
    'accept_member_invitation', 'authenticate_console', 'confirm_console_login', 'logout_console', 'peek_console_login',
    'peek_member_invitation', 'request_console_login'
  ],
  'the service schema holds exactly the functions that trust the web process with an account, slug or hash'
);
select is_empty(
  'table comment_offenders',
  'every api function and view has a comment'
);
select is_empty(
  'table member_role_offenders',
  'every volatile api function a member may reach needs a member role above viewer'
);
select is_empty(
  'table require_account_offenders',
  'every api function but api.authenticate calls private.require_account for a key, and none takes its '
  'account from the caller (stripe_begin, portal_begin, set_context, the customer kind)'
);
select is_empty(
  'table service_offenders',
  'every service function begins with private.stripe_begin, private.portal_begin, a customer session or '
  'api.authenticate, or is a client address limit'
);
select is_empty(
  $$select fn::text from routines where schema in ('api', 'service') and proowner <> 'lic_definer'::regrole$$,
  'api and service functions are owned by lic_definer'
);
-- The one exception: metering partition upkeep is DDL on lic.metering_events,
-- which only its owner may do (decision 29).
select is_empty(
  $$
    select fn::text from routines
    where
      schema = 'worker'
      and proowner <> case
        when name in ('ensure_metering_partitions', 'drop_metering_partitions') then 'lic_owner'::regrole
        else 'lic_maint'::regrole
      end
  $$,
  'worker functions are owned by lic_maint, the metering partition upkeep by lic_owner (the table''s owner)'
);
select is_empty(
  $$
    select c.oid::regclass::text
    from pg_catalog.pg_class as c
    inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
    where
      n.nspname in ('lic', 'api', 'worker', 'private')
      and c.relkind in ('r', 'p', 'v', 'm')
      and c.relowner <> 'lic_owner'::regrole
  $$,
  'every table and view in lic, api, worker and private is owned by lic_owner'
);
select is_empty(
  $$
    select t.oid::regtype::text
    from pg_catalog.pg_type as t
    inner join pg_catalog.pg_namespace as n on t.typnamespace = n.oid
    left join pg_catalog.pg_class as c on t.typrelid = c.oid
    where
      n.nspname in ('lic', 'api', 'worker', 'private')
      and (t.typtype in ('e', 'd', 'r') or (t.typtype = 'c' and c.relkind = 'c'))
      and t.typowner <> 'lic_owner'::regrole
  $$,
  'every type in lic, api, worker and private is owned by lic_owner'
);
select is_empty(
  $$select fn::text from routines where schema = 'api' and not has_function_privilege('lic_app', fn, 'execute')$$,
  'lic_app can execute every api function'
);
select is_empty(
  $$select fn::text from routines where schema <> 'api' and has_function_privilege('lic_app', fn, 'execute')$$,
  'lic_app (tenants'' backends) can execute no function outside api: no service function'
);
select is_empty(
  $$
    select fn::text from routines
    where schema in ('api', 'service') and not has_function_privilege('lic_web', fn, 'execute')
  $$,
  'lic_web (the web process) can execute every api and service function'
);
select is_empty(
  $$
    select fn::text from routines
    where schema not in ('api', 'service') and has_function_privilege('lic_web', fn, 'execute')
  $$,
  'lic_web can execute nothing else'
);

-- Views
select is_empty(
  'table security_invoker_offenders',
  'every view in lic and api is security_invoker'
);
select is_empty(
  'table materialized_view_offenders',
  'no materialized view is selectable by lic_app or lic_reporting'
);

-- Roles and privileges
select is(
  (
    select count(*)::integer from pg_catalog.pg_roles
    where rolname in ('lic_owner', 'lic_definer', 'lic_maint', 'lic_app', 'lic_web', 'lic_worker', 'lic_reporting')
  ),
  7,
  'the seven lic roles exist'
);
select is_empty(
  $$
    select rolname::text from pg_catalog.pg_roles
    where
      rolname in ('lic_owner', 'lic_definer', 'lic_maint', 'lic_app', 'lic_web', 'lic_worker', 'lic_reporting')
      and (rolsuper or rolbypassrls)
  $$,
  'no lic role is a superuser or bypasses row level security'
);
select results_eq(
  $$
    select oid::regrole::text from pg_catalog.pg_roles
    where
      rolname in ('lic_owner', 'lic_definer', 'lic_maint', 'lic_app', 'lic_web', 'lic_worker', 'lic_reporting')
      and rolcanlogin
    order by 1
  $$,
  array['lic_app', 'lic_reporting', 'lic_web', 'lic_worker'],
  'only lic_app, lic_web, lic_worker and lic_reporting can log in'
);
select is_empty(
  $$
    select m.roleid::regrole::text || ' -> ' || m.member::regrole::text
    from pg_catalog.pg_auth_members as m
    where m.member in (
      select oid from pg_catalog.pg_roles where rolname in ('lic_app', 'lic_web', 'lic_worker', 'lic_reporting')
    )
  $$,
  'the login roles are members of no other role'
);
select is_empty(
  $$
    select pg_describe_object(d.classid, d.objid, d.objsubid)
    from pg_catalog.pg_shdepend as d
    where
      d.refclassid = 'pg_catalog.pg_authid'::regclass
      and d.refobjid in ('lic_app'::regrole, 'lic_web'::regrole)
      and d.deptype = 'o'
      and d.dbid in (0, (select oid from pg_catalog.pg_database where datname = current_database()))
  $$,
  'lic_app and lic_web own nothing'
);
select is_empty(
  'table lic_app_relation_offenders',
  'lic_app has no privilege on any lic table, view or sequence'
);
select is_empty(
  $$
    select r.role || ' on ' || n.nspname
    from pg_catalog.pg_namespace as n
    cross join (values ('lic_app'), ('lic_web')) as r (role)
    where
      (n.nspname in ('lic', 'private', 'worker') or (n.nspname = 'service' and r.role = 'lic_app'))
      and has_schema_privilege(r.role, n.oid, 'usage')
  $$,
  'lic_app has no USAGE on lic, private, worker or service; lic_web none on lic, private or worker'
);
select is_empty(
  $$
    select rolname::text from pg_catalog.pg_roles
    where rolname like 'lic\_%' and rolcanlogin and has_schema_privilege(oid, 'private', 'usage')
  $$,
  'no lic login role has USAGE on private'
);
select ok(has_schema_privilege('lic_app', 'api', 'usage'), 'lic_app has USAGE on api');
select is_empty(
  $$
    select c.oid::regclass::text || ' to ' || r.rolname
    from pg_catalog.pg_class as c
    inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
    cross join pg_catalog.pg_roles as r
    where
      n.nspname = 'private'
      and c.relkind in ('r', 'p', 'v', 'm', 'S')
      and r.rolname like 'lic\_%'
      and r.rolname not in ('lic_definer', 'lic_owner')
      and has_table_privilege(r.oid, c.oid, 'select, insert, update, delete, truncate, references, trigger')
  $$,
  'no lic role but lic_definer (and lic_owner, the owner) has a privilege on a private table (the signing key)'
);

-- The checks catch offenders: one of each kind, rolled back with the rest.
create table lic.canary_plain (id integer primary key, code text unique);
create table lic.canary_tenant (
  account_id uuid not null,
  id integer not null,
  code text,
  primary key (id, account_id),
  unique (code),
  foreign key (id, account_id) references lic.canary_tenant (id, account_id)
);
alter table lic.canary_tenant enable row level security;
create policy canary_tenant__all__tenant on lic.canary_tenant
as restrictive for all to lic_definer, lic_reporting
using (account_id is null or account_id = (select private.current_account_id()));
create policy canary_tenant__select__app on lic.canary_tenant for select to lic_app using (true);
grant select (code) on lic.canary_plain to lic_app;
create view lic.canary_view as select 1 as one;
create view api.canary_view with (security_invoker) as select 1 as one;
create materialized view lic.canary_matview as select 1 as one;
grant select on lic.canary_matview to lic_reporting;
create function api.canary() returns integer language sql security definer as 'select 1';
grant execute on function api.canary() to public;
-- An api function that proves a key but also takes an account from its caller.
create function api.canary_trusting(account_id uuid) returns uuid language plpgsql
set search_path = pg_catalog, pg_temp
as 'begin perform private.require_account(); perform private.stripe_begin(account_id); return account_id; end';
comment on function api.canary_trusting(uuid) is 'canary';
-- Volatile api functions: one admits a viewer member, one admits agents only.
create function api.canary_viewer() returns uuid language plpgsql
as 'begin return private.require_account(member_role => ''viewer''); end';
create function api.canary_agent() returns uuid language plpgsql
as 'begin return private.require_account(kinds => array[''agent'']); end';
comment on function api.canary_viewer() is 'canary';
comment on function api.canary_agent() is 'canary';
revoke execute on function api.canary_viewer(), api.canary_agent() from public;
create function service.canary() returns integer language sql as 'select 1';
-- A client address limit that also reads a table.
create function service.canary_client(client_hash bytea) returns bigint language plpgsql as
'begin perform private.count_client_request(client_hash, now()); return (select count(*) from lic.accounts); end';
create function worker.canary(since date) returns integer language sql as 'select 1';
alter table lic.metering_events_default no force row level security;
create policy metering_events_default__select__app on lic.metering_events_default for select to lic_app
using (true);

select results_eq(
  'select * from rls_offenders order by 1',
  array['lic.canary_plain', 'lic.canary_tenant', 'lic.metering_events_default'],
  'the RLS check names tables, partitions too, without forced row level security'
);
select results_eq(
  'select * from account_column_offenders order by 1',
  array['lic.canary_plain'],
  'the account_id check names a table without it'
);
select results_eq(
  'select * from primary_key_offenders order by 1',
  array['lic.canary_plain', 'lic.canary_tenant'],
  'the primary key check names keys that do not start with account_id'
);
select results_eq(
  'select * from unique_offenders order by 1',
  array['lic.canary_plain_code_key', 'lic.canary_plain_pkey', 'lic.canary_tenant_code_key'],
  'the unique check names unique indexes without account_id'
);
select is(
  (
    select count(*)::integer from foreign_key_offenders
    where offender like '% on table lic.canary%'
  ),
  0,
  'the foreign key check accepts a key that pairs account_id with account_id'
);
alter table lic.canary_tenant add column other_id uuid;
alter table lic.canary_tenant add constraint canary_tenant_other_fkey
foreign key (other_id, id) references lic.canary_tenant (account_id, id);
select results_eq(
  'select * from foreign_key_offenders order by 1',
  array['constraint canary_tenant_other_fkey on table lic.canary_tenant'],
  'the foreign key check names a key that pairs account_id with another column'
);
select results_eq(
  'select * from tenant_policy_offenders order by 1',
  array['lic.canary_tenant'],
  'the tenant policy check names a table whose policy is not exactly the tenant predicate'
);
select results_eq(
  'select * from widening_policy_offenders order by 1',
  array['policy canary_tenant__all__tenant on table lic.canary_tenant'],
  'the widening check names a policy with OR ... IS NULL'
);
select results_eq(
  'select * from permissive_policy_offenders order by 1',
  array['policy canary_tenant__select__app on table lic.canary_tenant'],
  'the permissive policy check names a policy for another role'
);
select results_eq(
  'select * from partition_policy_offenders order by 1',
  array['lic.metering_events_default'],
  'the partition policy check names a partition with another policy'
);
select results_eq(
  'select * from worker_clock_offenders order by 1',
  array['worker.canary(date)'],
  'the worker clock check names a worker function taking a date'
);
select results_eq(
  'select * from search_path_offenders order by 1',
  array['api.canary()'],
  'the search_path check names a definer function without it'
);
select results_eq(
  'select * from public_execute_offenders order by 1',
  array['api.canary()'],
  'the PUBLIC execute check names a function PUBLIC may run'
);
select results_eq(
  'select * from comment_offenders order by 1',
  array['api.canary()', 'api.canary_view'],
  'the comment check names api objects without a comment'
);
select results_eq(
  'select * from require_account_offenders order by 1',
  array['api.canary()', 'api.canary_trusting(uuid)'],
  'the require_account check names an api function that does not call it or takes its account from the caller'
);
select results_eq(
  'select * from member_role_offenders order by 1',
  array['api.canary_trusting(uuid)', 'api.canary_viewer()'],
  'the member role check names a volatile api function that admits a viewer member'
);
select results_eq(
  'select * from service_offenders order by 1',
  array['service.canary()', 'service.canary_client(bytea)'],
  'the service check names a service function that does not begin from a slug, a Stripe account, a session or '
  'a key, and a client address limit that reaches more than its counter'
);
select results_eq(
  'select * from lic_app_relation_offenders order by 1',
  array['lic.canary_plain'],
  'the lic_app check names a table lic_app holds a column privilege on'
);
select results_eq(
  'select * from security_invoker_offenders order by 1',
  array['lic.canary_view'],
  'the security_invoker check names a view without it'
);
select results_eq(
  'select * from materialized_view_offenders order by 1',
  array['lic.canary_matview'],
  'the materialized view check names one lic_reporting may select'
);

select * from finish();
rollback;

-- Roles in SQL (decision 65): a member context reaches what a secret key
-- reaches, within the role each api function declares. Checked over the
-- catalog, so a new function is covered without editing this file: a viewer
-- is refused (LDNID) by every function that writes, each role's allowed set
-- is exactly the one documented in docs/console.md, and a member reaches no
-- function for agents, publishable keys or portal customers only.
begin;
select plan(11);

select tests.create_account('A', 'starter');
select private.set_context(tests.account_id('A'), 'secret');
select tests.remember(r.role, (private.add_member(tests.account_id('A'), r.role || '@example.com', r.role)).id)
from (values ('owner'), ('admin'), ('developer'), ('viewer')) as r (role);
select tests.clear_context();

-- The web process (lic_web) acting for a member, as after
-- service.authenticate_console.
create function tests.as_member(role text)
returns void
language plpgsql
volatile
as $$
begin
  perform tests.clear_context();
  perform private.set_context(tests.account_id('A'), 'member', tests.id(as_member.role));
  perform pg_catalog.set_config('role', 'lic_web', true);
end;
$$;

-- The api functions, each with whether it writes.
create temporary table api_functions as
select
  p.oid::regprocedure as fn,
  p.proname::text as name,
  p.provolatile = 'v' as writes
from pg_catalog.pg_proc as p
inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
where n.nspname = 'api' and p.proname <> 'authenticate';
grant select on api_functions to lic_web;

-- What a role may not call: the functions that refuse it with LDNID.
create function tests.refused(role text)
returns setof text
language plpgsql
volatile
as $$
declare
  v_fn record;
begin
  for v_fn in select f.fn, f.name from api_functions as f order by f.name loop
    perform tests.as_member(refused.role);
    if tests.sqlstate_of(tests.call_with_nulls(v_fn.fn)) = 'LDNID' then
      return next v_fn.name;
    end if;
  end loop;
  perform tests.clear_context();
end;
$$;

grant execute on function tests.as_member(text), tests.refused(text) to lic_web;

create temporary table refused as
select
  r.role,
  f.name
from (values ('owner'), ('admin'), ('developer'), ('viewer')) as r (role), lateral tests.refused(r.role) as f (name);

-- Functions no member reaches whatever its role: agents', publishable keys'.
create temporary table never as
select unnest(array['get_current_agent']) as name;

select is_empty(
  $$
    select name from api_functions
    where writes and name not in ('list_member_sessions', 'revoke_member_session')
    except select name from refused where role = 'viewer'
  $$,
  'a viewer is refused (LDNID) by every api function that writes, but ending its own sessions'
);
select is_empty(
  $$select name from api_functions where not writes and name not in ('list_member_sessions', 'revoke_member_session')
    and name not in ('webhook_endpoint_secrets', 'get_stripe_api_key', 'stripe_billing_portal_target')
    and name not in (select name from never)
    intersect select name from refused where role = 'viewer'$$,
  'a viewer reads everything else'
);
select set_eq(
  $$select name from refused where role = 'viewer' except select name from refused where role = 'developer'$$,
  array[
    'archive_meter', 'claim_idempotency_key', 'create_api_key', 'create_meter', 'create_webhook_endpoint',
    'delete_webhook_endpoint', 'ingest_events', 'replay_webhook_endpoint', 'retry_webhook_delivery', 'revoke_api_key',
    'roll_api_key', 'rotate_webhook_endpoint_secret', 'save_idempotent_response', 'send_test_webhook', 'update_meter',
    'update_webhook_endpoint', 'webhook_endpoint_secrets'
  ],
  'a developer may also manage API keys, webhook endpoints (and reveal their secrets), meters, and record usage'
);
select set_eq(
  $$select name from refused where role = 'admin'$$,
  array[
    'get_current_agent', 'invite_member', 'remove_member', 'revoke_member_invitation', 'transfer_ownership',
    'update_member_role'
  ],
  'an admin may do everything but members and ownership'
);
select set_eq(
  $$select name from refused where role = 'owner'$$,
  array['get_current_agent'],
  'an owner may do everything a secret key may'
);
select set_eq(
  $$select name from refused where role = 'developer' except select name from refused where role = 'admin'$$,
  array[
    'activate_machine', 'add_license_user', 'archive_license_policy', 'attach_entitlement', 'cancel_license',
    'change_license_policy', 'create_agent', 'create_budget', 'create_customer', 'create_entitlement',
    'create_license', 'create_license_policy', 'create_stripe_mapping', 'deactivate_machine', 'delete_budget',
    'delete_stripe_connection', 'delete_stripe_mapping', 'detach_entitlement', 'ensure_signing_key',
    'get_stripe_api_key', 'heartbeat_machine', 'issue_license_file', 'put_stripe_connection', 'reinstate_license',
    'remove_license_entitlement', 'remove_license_user', 'renew_license', 'reprocess_stripe_event', 'revoke_agent',
    'roll_agent_token', 'rotate_signing_key', 'set_license_entitlement', 'stripe_billing_portal_target',
    'suspend_license',
    'transfer_machine', 'update_account',
    'update_agent', 'update_budget', 'update_customer', 'update_entitlement', 'update_license',
    'update_license_policy',
    'update_portal_settings'
  ],
  'the rest is the admin''s: licensing, customers, agents, budgets, Stripe, the portal'
);

-- A removed member's context reaches nothing, and a viewer's refusal names
-- the role it needs.
select tests.as_member('viewer');
select throws_ok(
  $$select api.create_customer(email => 'c@example.com')$$,
  'LDNID', 'a member with the viewer role may not do this; it needs admin or above',
  'the refusal names the role it needs'
);
select tests.as_member('admin');
select lives_ok($$select api.create_customer(email => 'c@example.com')$$, 'an admin creates a customer');
select is(
  (
    select row(e.actor_kind, e.actor_id, e.actor_email, e.data -> 'object' ->> 'email')::text
    from api.list_audit_events(type => 'customer.created') as e
    order by e.id desc
    limit 1
  ),
  row('member', tests.id('admin'), 'admin@example.com', 'c@example.com')::text,
  'and the event names the member'
);
select tests.clear_context();
delete from lic.members
where account_id = tests.account_id('A') and id = tests.id('developer');
select tests.as_member('developer');
select throws_ok(
  $$select * from api.list_customers()$$,
  'LAUTH', null, 'a removed member''s context reaches nothing'
);
select tests.as_member('viewer');
select lives_ok(
  $$select api.validate_license(key => 'x')$$,
  'a viewer may validate a license key (a read: the secret key''s kind admits it)'
);

select * from finish();
rollback;

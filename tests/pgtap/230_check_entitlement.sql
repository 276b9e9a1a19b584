-- api.check_entitlement: by license (id or key) and by customer external id
-- across the customer's owner and member seats.
begin;
select plan(27);
\ir licensing_fixtures.sql

select from tests.create_account('A');
select from tests.create_account('B');
select from tests.fx_policy('A', 'pro');
select from tests.fx_policy('A', 'basic');
select from tests.fx_policy('B', 'pro');
select from tests.fx_entitlement('A', 'sso', array['pro']);
select from tests.fx_entitlement('A', 'api', array['pro', 'basic']);
select from tests.fx_entitlement('A', 'extra');
select from tests.fx_entitlement('B', 'sso', array['pro']);
select tests.fx_customer('A', 'user-1') as u1 \gset
select tests.fx_customer('A', 'user-2') as u2 \gset
select tests.fx_customer('A', 'user-3') as u3 \gset
select tests.fx_customer('A', 'user-4') as u4 \gset
select from tests.fx_customer('B', 'user-1');

select from tests.fx_license('A', 'pro', 'pro');
select from tests.fx_license('A', 'grace', 'pro', 'past_due', grace_ends_at => now() + interval '1 day');
select from tests.fx_license('A', 'overdue', 'pro', 'past_due', grace_ends_at => now() - interval '1 day');
select from tests.fx_license('A', 'suspended', 'pro', 'suspended');
select from tests.fx_license('A', 'lapsed', 'pro', expires_at => now() - interval '1 minute');
select from tests.fx_license('A', 'canceled', 'pro', 'canceled');
-- user-1 owns a basic license and is a member on an expired pro one; user-2
-- owns a pro license (member seat); user-3 has only a suspended pro license;
-- user-4 has no license.
select from tests.fx_license('A', 'u1 basic', 'basic', customer_id => :'u1');
select from tests.fx_license('A', 'u1 old pro', 'pro', 'expired', now() - interval '1 day');
select from tests.fx_license('A', 'u2 pro', 'pro');
select from tests.fx_seat('u1 basic', :'u1', 'owner');
select from tests.fx_seat('u1 old pro', :'u1', 'member');
select from tests.fx_seat('u2 pro', :'u2', 'member');
select from tests.fx_seat('suspended', :'u3', 'owner');
select from tests.fx_license('B', 'b', 'pro');
select private.new_license_key() as unknown_key \gset

select tests.act_as(tests.secret_key('A'));

-- By license.
select is(
  api.check_entitlement('sso', license_id => tests.fx_id('pro')),
  row(true, 'ENTITLED', tests.fx_id('pro'))::api.entitlement_check,
  'a license with the entitlement through its policy is ENTITLED'
);
select is(
  api.check_entitlement('sso', license_key => lower(tests.fx_key('pro'))),
  row(true, 'ENTITLED', tests.fx_id('pro'))::api.entitlement_check,
  'by key, however typed'
);
select is(
  api.check_entitlement('extra', license_id => tests.fx_id('pro')),
  row(false, 'NOT_ENTITLED', tests.fx_id('pro'))::api.entitlement_check,
  'an entitlement the license lacks is NOT_ENTITLED'
);
select is(
  (api.check_entitlement('unknown-code', license_id => tests.fx_id('pro'))).reason, 'NOT_ENTITLED',
  'an unknown entitlement code is NOT_ENTITLED, not an error'
);
select is(
  api.check_entitlement('sso', license_id => tests.fx_id('grace')),
  row(true, 'ENTITLED', tests.fx_id('grace'))::api.entitlement_check,
  'a license in its payment grace period still allows'
);
select is(
  (api.check_entitlement('sso', license_id => tests.fx_id('overdue'))).reason, 'OVERDUE',
  'an overdue license answers OVERDUE'
);
select is(
  api.check_entitlement('sso', license_id => tests.fx_id('suspended')),
  row(false, 'SUSPENDED', tests.fx_id('suspended'))::api.entitlement_check,
  'a suspended license answers SUSPENDED'
);
select is(
  (api.check_entitlement('sso', license_id => tests.fx_id('lapsed'))).reason, 'EXPIRED',
  'a license past its expiry answers EXPIRED before any sweep'
);
select is(
  (api.check_entitlement('sso', license_id => tests.fx_id('canceled'))).reason, 'CANCELED',
  'a canceled license answers CANCELED'
);
select is(
  api.check_entitlement('sso', license_id => tests.fx_id('b')),
  row(false, 'LICENSE_NOT_FOUND', null)::api.entitlement_check,
  'another account''s license is LICENSE_NOT_FOUND'
);
select is(
  (api.check_entitlement('sso', license_key => tests.fx_key('b'))).reason, 'LICENSE_NOT_FOUND',
  'another account''s license key is LICENSE_NOT_FOUND'
);
select is(
  (api.check_entitlement('sso', license_key => :'unknown_key')).reason, 'LICENSE_NOT_FOUND',
  'an unknown key is LICENSE_NOT_FOUND'
);
select is(
  (api.check_entitlement('sso', license_key => 'garbage')).reason, 'LICENSE_NOT_FOUND',
  'a malformed key is LICENSE_NOT_FOUND'
);

-- Overrides decide.
select tests.clear_context();
insert into lic.license_entitlements (account_id, license_id, entitlement_id, effect)
select
  e.account_id,
  tests.fx_id('pro') as license_id,
  e.id,
  case e.code when 'sso' then 'revoke' else 'grant' end as effect
from lic.entitlements as e
where e.account_id = tests.account_id('A') and e.code in ('sso', 'extra');
select tests.act_as(tests.secret_key('A'));
select is(
  (api.check_entitlement('sso', license_id => tests.fx_id('pro'))).reason, 'NOT_ENTITLED',
  'a revoke override takes the policy''s entitlement away'
);
select is(
  (api.check_entitlement('extra', license_id => tests.fx_id('pro'))).reason, 'ENTITLED',
  'a grant override gives an entitlement the policy lacks'
);

-- By customer external id.
select is(
  api.check_entitlement('api', customer_external_id => 'user-1'),
  row(true, 'ENTITLED', tests.fx_id('u1 basic'))::api.entitlement_check,
  'a customer is entitled through a license they own, and the answer names it'
);
select is(
  api.check_entitlement('sso', customer_external_id => 'user-1'),
  row(false, 'NOT_ENTITLED', null)::api.entitlement_check,
  'a customer whose valid licenses lack it is NOT_ENTITLED (their expired pro license does not count)'
);
select is(
  api.check_entitlement('sso', customer_external_id => 'user-2'),
  row(true, 'ENTITLED', tests.fx_id('u2 pro'))::api.entitlement_check,
  'a member seat counts'
);
select is(
  api.check_entitlement('sso', customer_external_id => 'user-3'),
  row(false, 'NO_VALID_LICENSE', null)::api.entitlement_check,
  'a customer with only a suspended license has NO_VALID_LICENSE'
);
select is(
  (api.check_entitlement('sso', customer_external_id => 'user-4')).reason, 'NO_VALID_LICENSE',
  'a customer with no license has NO_VALID_LICENSE'
);
select is(
  api.check_entitlement('sso', customer_external_id => 'nobody'),
  row(false, 'CUSTOMER_NOT_FOUND', null)::api.entitlement_check,
  'an unknown external id is CUSTOMER_NOT_FOUND'
);
select tests.clear_context();
select from tests.fx_license('A', 'u1 pro', 'pro');
select from tests.fx_seat('u1 pro', :'u1', 'member');
select tests.act_as(tests.secret_key('A'));
select is(
  api.check_entitlement('sso', customer_external_id => 'user-1'),
  row(true, 'ENTITLED', tests.fx_id('u1 pro'))::api.entitlement_check,
  'any valid license of the customer that has it answers'
);

-- Exactly one identifier.
select throws_ok(
  $$select api.check_entitlement('sso')$$, 'LINVL', null, 'no identifier is refused'
);
select throws_ok(
  format('select api.check_entitlement(%L, license_id => %L, license_key => %L)', 'sso', tests.fx_id('pro'), 'k'),
  'LINVL', null, 'two identifiers are refused'
);
select throws_ok(
  format('select api.check_entitlement(null, license_id => %L)', tests.fx_id('pro')),
  'LINVL', null, 'an entitlement is required'
);

-- Tenancy: B's customer with the same external id is B's.
select tests.clear_context();
select tests.act_as(tests.secret_key('B'));
select is(
  api.check_entitlement('sso', customer_external_id => 'user-1'),
  row(false, 'NO_VALID_LICENSE', null)::api.entitlement_check,
  'the same external id in another account is that account''s customer'
);
select is(
  (api.check_entitlement('sso', license_id => tests.fx_id('pro'))).reason, 'LICENSE_NOT_FOUND',
  'B cannot check A''s license'
);

select * from finish();
rollback;

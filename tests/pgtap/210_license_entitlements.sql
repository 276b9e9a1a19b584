-- Entitlement overrides and the effective set: policy's ∪ grants − revokes,
-- one definition shared by listing, validation and checks.
begin;
select plan(24);
\ir licensing_fixtures.sql

select from tests.create_account('A');
select from tests.create_account('B');
select from tests.fx_policy('A', 'pro');
select from tests.fx_policy('A', 'basic');
select from tests.fx_policy('B', 'pro');
select from tests.fx_entitlement('A', 'sso', array['pro']);
select from tests.fx_entitlement('A', 'api', array['pro', 'basic']);
select from tests.fx_entitlement('A', 'audit');
select from tests.fx_entitlement('B', 'beta', array['pro']);
select from tests.fx_license('A', 'l', 'pro');
select from tests.fx_license('A', 'other', 'pro');
select from tests.fx_license('B', 'b', 'pro');

select tests.act_as(tests.secret_key('A'));

select results_eq(
  format('select code, name, source from api.list_license_entitlements(%L)', tests.fx_id('l')),
  $$values ('api', 'API', 'policy'), ('sso', 'SSO', 'policy')$$,
  'a license without overrides has its policy''s entitlements, sorted by code'
);
select results_eq(
  format('select code, source from api.set_license_entitlement(%L, %L, %L)', tests.fx_id('l'), 'audit', 'grant'),
  $$values ('api', 'policy'), ('audit', 'grant'), ('sso', 'policy')$$,
  'a grant adds an entitlement the policy lacks; the answer is the effective set'
);
select results_eq(
  format('select code from api.set_license_entitlement(%L, %L, %L)', tests.fx_id('l'), 'sso', 'revoke'),
  $$values ('api'), ('audit')$$,
  'a revoke removes a policy entitlement'
);
select results_eq(
  format('select code, source from api.set_license_entitlement(%L, %L, %L)', tests.fx_id('l'), 'sso', 'grant'),
  $$values ('api', 'policy'), ('audit', 'grant'), ('sso', 'grant')$$,
  'setting again replaces the effect (upsert); an explicit grant shows as its source'
);
select results_eq(
  format('select code from api.set_license_entitlement(%L, %L, %L)', tests.fx_id('l'), 'audit', 'revoke'),
  $$values ('api'), ('sso')$$,
  'revoking a granted entitlement the policy lacks removes it'
);
select results_eq(
  format('select code from api.list_license_entitlements(%L)', tests.fx_id('other')),
  $$values ('api'), ('sso')$$,
  'overrides belong to one license: another license of the same policy is unchanged'
);
select results_eq(
  format('select code, source from api.remove_license_entitlement(%L, %L)', tests.fx_id('l'), 'sso'),
  $$values ('api', 'policy'), ('sso', 'policy')$$,
  'removing an override lets the policy decide again'
);
select results_eq(
  format('select code from api.remove_license_entitlement(%L, %L)', tests.fx_id('l'), 'sso'),
  $$values ('api'), ('sso')$$,
  'removing an override that does not exist changes nothing'
);
select throws_ok(
  format('select * from api.set_license_entitlement(%L, %L, %L)', tests.fx_id('l'), 'nope', 'grant'),
  'LNTFD', null, 'an unknown entitlement code is not found'
);
select throws_ok(
  format('select * from api.set_license_entitlement(%L, %L, %L)', tests.fx_id('l'), 'beta', 'grant'),
  'LNTFD', null, 'another account''s entitlement code is not found'
);
select throws_ok(
  format('select * from api.set_license_entitlement(%L, %L, %L)', tests.fx_id('l'), 'sso', 'allow'),
  'LINVL', null, 'an effect other than grant or revoke is refused'
);
select throws_ok(
  format('select * from api.set_license_entitlement(%L, %L, null)', tests.fx_id('l'), 'sso'),
  'LINVL', null, 'a null effect is refused'
);
select throws_ok(
  format('select * from api.remove_license_entitlement(%L, %L)', tests.fx_id('l'), 'nope'),
  'LNTFD', null, 'removing an unknown entitlement is not found'
);
select throws_ok(
  format('select * from api.set_license_entitlement(%L, %L, %L)', tests.fx_id('b'), 'sso', 'grant'),
  'LNTFD', null, 'another account''s license cannot be given overrides'
);
select throws_ok(
  format('select * from api.remove_license_entitlement(%L, %L)', tests.fx_id('b'), 'sso'),
  'LNTFD', null, 'another account''s license overrides cannot be removed'
);
select throws_ok(
  format('select * from api.list_license_entitlements(%L)', tests.fx_id('b')),
  'LNTFD', null, 'another account''s license entitlements are not listed'
);

-- One definition: the membership test agrees with the set for every code.
select tests.clear_context();
select from tests.fx_policy('A', 'empty');
select from tests.fx_license('A', 'mixed', 'pro');
insert into lic.license_entitlements (account_id, license_id, entitlement_id, effect)
select
  e.account_id,
  tests.fx_id('mixed') as license_id,
  e.id,
  case e.code when 'api' then 'revoke' else 'grant' end as effect
from lic.entitlements as e
where e.account_id = tests.account_id('A') and e.code in ('api', 'audit');
select is_empty(
  $$
    select x.id from lic.licenses as x
    where x.entitlement_codes is distinct from private.effective_entitlement_codes(x.account_id, x.id, x.policy_id)
  $$,
  'every license''s cached entitlement_codes equal its effective entitlement codes'
);
select is(
  (
    select x.entitlement_codes from lic.licenses as x
    where x.id = tests.fx_id('mixed')
  ),
  private.effective_entitlement_codes(
    tests.account_id('A'),
    tests.fx_id('mixed'),
    (
      select x.policy_id from lic.licenses as x
      where x.id = tests.fx_id('mixed')
    )
  ),
  'overrides written straight into lic.license_entitlements refresh the license''s codes'
);

-- Events: an override change is announced with the effective codes.
select results_eq(
  $$
    select e.object -> 'entitlements', e.previous_attributes -> 'entitlements'
    from lic.events as e
    where e.type = 'license.entitlements_updated' and e.object ->> 'id' = tests.fx_id('l')::text
    order by e.id limit 2
  $$,
  $$
    values
    ('["api", "audit", "sso"]'::jsonb, '["api", "sso"]'::jsonb),
    ('["api", "audit"]', '["api", "audit", "sso"]')
  $$,
  'license.entitlements_updated carries the effective codes after and before'
);
select is(
  (
    select count(*)::integer from lic.events as e
    where e.type = 'license.entitlements_updated' and e.object ->> 'id' = tests.fx_id('l')::text
  ),
  5,
  'a change that changes no override (removing a missing one) emits nothing'
);

-- The cached codes follow every change through the api: attaching to and
-- detaching from a policy reaches all its licenses, changing policy too.
select tests.act_as(tests.secret_key('A'));
select from api.create_entitlement(code => 'late', name => 'Late');
select from api.attach_entitlement(license_policy_id => (api.get_license_policy(code => 'pro')).id, code => 'late');
select tests.clear_context();
select is_empty(
  $$
    select x.id from lic.licenses as x
    where
      x.account_id = tests.account_id('A') and not 'late' = any(x.entitlement_codes)
      and x.policy_id = (select p.id from lic.license_policies as p where p.account_id = x.account_id and p.code = 'pro')
  $$,
  'attaching an entitlement to a policy adds it to the cached codes of every license on it'
);
select tests.act_as(tests.secret_key('A'));
select from api.detach_entitlement(license_policy_id => (api.get_license_policy(code => 'pro')).id, code => 'late');
select from api.change_license_policy(license_id => tests.fx_id('other'), license_policy_code => 'basic');
select tests.clear_context();
select is_empty(
  $$select x.id from lic.licenses as x where 'late' = any(x.entitlement_codes)$$,
  'detaching removes it again'
);
select is_empty(
  $$
    select x.id from lic.licenses as x
    where x.entitlement_codes is distinct from private.effective_entitlement_codes(x.account_id, x.id, x.policy_id)
  $$,
  'after attach, detach and a policy change every cached entitlement_codes is still exact'
);

-- Index lookups only: the set is computed from one policy's and one license's rows.
set local enable_seqscan = off;
select unalike(
  (
    select string_agg(p, e'\n')
    from tests.explain_lines(
      format(
        'select * from private.effective_entitlements(%L, %L, %L)',
        tests.account_id(
          'A'), tests.fx_id('l'), (
          select policy_id from lic.licenses
          where id = tests.fx_id('l')
        )
      )
    ) as p
  ),
  '%Seq Scan%',
  'the effective set is read through indexes'
);

select * from finish();
rollback;

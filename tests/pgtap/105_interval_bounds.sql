-- Intervals and expiries that later arithmetic (now() + duration, a heartbeat's
-- deadline, a renewal) could carry past PostgreSQL's last timestamp are refused
-- when written, with LINVL naming the field: a data exception raised inside a
-- function is a 500 (decision 63), so what would cause one is checked first.
begin;
select plan(9);
\ir licensing_fixtures.sql

select from tests.create_account('A');
select tests.fx_policy('A', 'monthly') as monthly \gset
select from tests.fx_license('A', 'active', 'monthly');
select from tests.act_as(tests.secret_key('A'));

select throws_ok(
  $$select api.create_license_policy(code => 'a', name => 'A', duration => 'P300000Y')$$,
  'LINVL', null, 'a duration longer than 100 years is refused (now() + it would not be a timestamp)'
);
select throws_ok(
  $$select api.create_license_policy(code => 'a', name => 'A', heartbeat_interval => 'P300000Y')$$,
  'LINVL', null, 'so is such a heartbeat interval'
);
select throws_ok(
  $$select api.create_license_policy(code => 'a', name => 'A', grace_period => 'P300000Y')$$,
  'LINVL', null, 'and such a grace period'
);
select throws_ok(
  format($$select api.update_license_policy(%L, duration => 'P300000Y')$$, :'monthly'),
  'LINVL', null, 'an update is held to the same bounds'
);
select is(
  (api.create_license_policy(code => 'century', name => 'C', duration => 'P100Y', grace_period => 'P100Y')).duration,
  'P100Y', '100 years is still a duration'
);
select isnt(
  (api.create_license(policy_code => 'century')).expires_at, null, 'and a license on it expires'
);
select throws_ok(
  format($$select api.update_license(%L, expires_at => '294000-01-01Z')$$, tests.fx_id('active')),
  'LINVL', null, 'an expiry more than 1,000 years ahead is refused (a renewal would overflow)'
);
select throws_ok(
  format($$select api.update_license(%L, expires_at => 'infinity')$$, tests.fx_id('active')),
  'LINVL', null, 'infinity too: a license without expiry is clear_expiry'
);
select is(
  (api.update_license(tests.fx_id('active'), expires_at => now() + interval '999 years')).expires_at,
  now() + interval '999 years', 'an expiry within 1,000 years is kept'
);

select * from finish();
rollback;

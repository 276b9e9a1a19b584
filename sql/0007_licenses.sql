-- The expiry sweep (worker.expire_licenses, owned by lic_maint) writes
-- license.expired events whose data.object is the public shape of a license,
-- api.license: naming that type needs USAGE on schema api. USAGE gives
-- lic_maint no api function (EXECUTE stays with lic_app), only the contract's
-- types.
grant usage on schema api to lic_maint;

-- What a license's budget counts: every event of the license (its own, its
-- agents', its subject keys': what every license budget counted until now)
-- or, with own_events_only, only the license's own events, those with no
-- agent and no subject key. An agent's budget counts the agent's events.
-- The contract names it scope: subject (the subject's own events) or
-- all_subjects (a license's budget over every event of the license).

alter table lic.budgets
add column own_events_only boolean not null default false,
add constraint budgets_own_events_only_check check (not own_events_only or license_id is not null);

alter type api.budget add attribute scope text;

-- Their signatures gain the scope (create_budget) and the event's subject key
-- (event_budgets); the old ones would stay beside them as overloads.
drop function if exists api.create_budget(text, numeric, uuid, text, uuid, uuid, boolean, integer[], jsonb);
drop function if exists private.event_budgets(uuid, uuid, uuid, uuid);

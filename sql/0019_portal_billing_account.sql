-- The billing button opens the tenant's Stripe key, whose ciphertext is bound
-- to its account (licentric/crypto.py): api.get_portal_billing answers the
-- account too, so the web layer need not read the transaction's context.

alter type api.portal_billing add attribute account_id uuid;

-- Kazoo keeps one API key per account, readable by the account's operators
-- (`GET /v2/accounts/{id}/api_key`), so it is stored as issued, not hashed.
ALTER TABLE accounts ADD COLUMN api_key TEXT;
CREATE UNIQUE INDEX accounts_api_key ON accounts (api_key) WHERE api_key IS NOT NULL;

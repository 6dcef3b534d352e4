-- Scoped API keys. `scopes` is a JSON array of scope names; `["*"]` holds every scope, which is
-- what the keys issued before scopes existed (the bootstrap admin key) get. `prefix` is the
-- key's first characters, shown in listings so an operator can recognise a key without its
-- secret; older keys have none.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '["*"]';
ALTER TABLE api_keys ADD COLUMN prefix TEXT NOT NULL DEFAULT '';

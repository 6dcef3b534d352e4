-- The whole Kazoo account document (timezone, language, caller_id, keys Switchboard does not
-- know...), kept as the client sent it; name, realm and parent_id stay typed columns.
ALTER TABLE accounts ADD COLUMN document TEXT NOT NULL DEFAULT '{}';

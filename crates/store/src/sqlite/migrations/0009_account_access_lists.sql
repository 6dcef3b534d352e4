-- An account's own SIP source-address lists (CIDR text, JSON arrays), set by its admins
-- through `/accounts/{id}/security/access_lists`. One row per account that ever set them;
-- clearing keeps the row with empty lists, so `revision` only grows and a directory cache
-- can tell an older copy from a newer one.
CREATE TABLE account_access_lists (
    account_id  TEXT PRIMARY KEY NOT NULL,
    allow       TEXT NOT NULL DEFAULT '[]',
    deny        TEXT NOT NULL DEFAULT '[]',
    revision    INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL
);
-- Directory refreshes read the lists written since their last look.
CREATE INDEX account_access_lists_modified ON account_access_lists (modified_ms);

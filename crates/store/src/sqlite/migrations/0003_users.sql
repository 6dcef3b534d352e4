-- Kazoo users. `username_key` is the lower-cased username (unique per account when set);
-- `md5_auth`/`sha1_auth` are Kazoo's user_auth credential hashes of "username:password" (the
-- password itself is never stored). `revision` starts at 1 and grows by one per update.
CREATE TABLE users (
    id           TEXT PRIMARY KEY NOT NULL,
    account_id   TEXT NOT NULL,
    username     TEXT,
    username_key TEXT,
    first_name   TEXT NOT NULL,
    last_name    TEXT NOT NULL,
    enabled      INTEGER NOT NULL,
    md5_auth     TEXT,
    sha1_auth    TEXT,
    document     TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    modified_ms  INTEGER NOT NULL,
    revision     INTEGER NOT NULL
);
CREATE INDEX users_account ON users (account_id, id);
CREATE UNIQUE INDEX users_username_unique ON users (account_id, username_key)
    WHERE username_key IS NOT NULL;
CREATE INDEX users_md5_auth ON users (account_id, md5_auth) WHERE md5_auth IS NOT NULL;
CREATE INDEX users_sha1_auth ON users (account_id, sha1_auth) WHERE sha1_auth IS NOT NULL;

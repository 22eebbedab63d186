-- charla's SQLite schema, version 1 (PRAGMA user_version = 1).
-- Applied by charla-server at every start; every statement is idempotent.
-- The table names are the original lab's: users and messages.

CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY,
    -- Unique regardless of case; usernames are ASCII, so NOCASE is exact.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    full_name     TEXT    NOT NULL,
    -- bcrypt hash ($2b$...); the password itself is never stored.
    password_hash TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS messages (
    -- Message ids only grow: rows are never deleted, so the rowid alias
    -- gives strictly increasing ids in storage order.
    id      INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    body    TEXT    NOT NULL,
    -- Milliseconds since the Unix epoch when the message was stored.
    ts_ms   INTEGER NOT NULL,
    -- The client's @TAG, the idempotency token of PROTOCOL.md 5.3.
    tag     TEXT
);

-- One message per (account, tag): the idempotency rule, enforced by SQLite.
CREATE UNIQUE INDEX IF NOT EXISTS messages_user_tag
    ON messages(user_id, tag) WHERE tag IS NOT NULL;

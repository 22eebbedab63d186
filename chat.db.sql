-- charla's SQLite schema, version 2 (PRAGMA user_version = 2).
-- Applied by charla-server at every start; every statement is idempotent.
-- A version 1 database is first migrated (see MIGRATIONS in
-- src/store/sqlite.rs: two columns added to messages), then this file
-- creates what is missing. The table names are the original lab's: users
-- and messages.

CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY,
    -- Unique regardless of case; usernames are ASCII, so NOCASE is exact.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    full_name     TEXT    NOT NULL,
    -- bcrypt hash ($2b$...); the password itself is never stored.
    password_hash TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL
);

-- Rooms other than the lobby (#general, which every account is always in
-- and which is not stored here). A room lives while it has members; when
-- its last member parts it ends (ended_ms is set) and a later JOIN of the
-- name creates a new room, with a new id and no history.
CREATE TABLE IF NOT EXISTS rooms (
    id         INTEGER PRIMARY KEY,
    -- With the case of the JOIN that created it.
    name       TEXT    NOT NULL,
    created_by INTEGER NOT NULL REFERENCES users(id),
    created_ms INTEGER NOT NULL,
    ended_ms   INTEGER
);

-- One live room per name, regardless of case (names are ASCII).
CREATE UNIQUE INDEX IF NOT EXISTS rooms_live_name
    ON rooms(name COLLATE NOCASE) WHERE ended_ms IS NULL;

-- Who is in which room: persistent, across logouts and restarts.
CREATE TABLE IF NOT EXISTS memberships (
    room_id   INTEGER NOT NULL REFERENCES rooms(id),
    user_id   INTEGER NOT NULL REFERENCES users(id),
    joined_ms INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS memberships_user ON memberships(user_id);

CREATE TABLE IF NOT EXISTS messages (
    -- Message ids only grow: rows are never deleted, so the rowid alias
    -- gives strictly increasing ids in storage order, one sequence for the
    -- lobby, every room and every private conversation.
    id      INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    body    TEXT    NOT NULL,
    -- Milliseconds since the Unix epoch when the message was stored.
    ts_ms   INTEGER NOT NULL,
    -- The client's @TAG, the idempotency token of PROTOCOL.md 5.3.
    tag     TEXT,
    -- Where it was sent: a room, or (to_user) one account; both NULL for
    -- the lobby, as every version 1 message is.
    room_id INTEGER REFERENCES rooms(id),
    to_user INTEGER REFERENCES users(id)
);

-- One message per (account, tag): the idempotency rule, enforced by SQLite.
CREATE UNIQUE INDEX IF NOT EXISTS messages_user_tag
    ON messages(user_id, tag) WHERE tag IS NOT NULL;

-- History of the lobby, of a room, of a private conversation (both ways).
CREATE INDEX IF NOT EXISTS messages_lobby
    ON messages(id) WHERE room_id IS NULL AND to_user IS NULL;
CREATE INDEX IF NOT EXISTS messages_room ON messages(room_id, id) WHERE room_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_to ON messages(to_user, user_id, id) WHERE to_user IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_from ON messages(user_id, to_user, id) WHERE to_user IS NOT NULL;

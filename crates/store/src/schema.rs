//! Versioned migrations, applied in order inside one transaction each; `PRAGMA user_version`
//! records how many have run.

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: conversations, messages, consent, preferences, local settings.
    r#"
CREATE TABLE conversations (
    -- Local row number; messages refer to it to keep their index small.
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    kind INTEGER NOT NULL,                 -- 1 group, 2 dm, 3 sync
    created_at_ns INTEGER NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    image_url TEXT NOT NULL DEFAULT '',
    creator_inbox_id TEXT NOT NULL DEFAULT '',
    dm_peer_inbox_id TEXT,
    dm_id TEXT,
    membership INTEGER NOT NULL,           -- 1 active, 2 restored, 3 left
    last_message_ns INTEGER
);
CREATE INDEX conversations_dm ON conversations(dm_id) WHERE dm_id IS NOT NULL;

-- Clustered on the message id: exports read it in id order and imports of such archives
-- insert in id order, so both walk the table sequentially instead of seeking at random.
-- Who sent a message (an inbox's installation) and what its content is, each stored once and
-- referred to by number: a message row carries two small integers instead of ~110 bytes.
CREATE TABLE senders (
    seq INTEGER PRIMARY KEY,
    inbox_id TEXT NOT NULL,
    installation_id BLOB NOT NULL,
    UNIQUE (inbox_id, installation_id)
);
CREATE TABLE content_types (
    seq INTEGER PRIMARY KEY,
    authority TEXT NOT NULL,
    type_id TEXT NOT NULL,
    major INTEGER NOT NULL,
    minor INTEGER NOT NULL,
    UNIQUE (authority, type_id, major, minor)
);

CREATE TABLE messages (
    id BLOB NOT NULL PRIMARY KEY,          -- 32 bytes, the same on every installation
    conversation INTEGER NOT NULL REFERENCES conversations(seq),
    sender INTEGER NOT NULL REFERENCES senders(seq),
    sent_at_ns INTEGER NOT NULL,
    kind INTEGER NOT NULL,                 -- 1 application, 2 membership change
    content_type INTEGER NOT NULL REFERENCES content_types(seq),
    content BLOB NOT NULL,
    fallback TEXT,
    parameters BLOB,
    reference_id BLOB,
    delivery_status INTEGER NOT NULL       -- 1 unpublished, 2 published, 3 failed
) WITHOUT ROWID;
-- (MESSAGES_TIME_INDEX below: kept in one place because bulk imports rebuild it.)
CREATE INDEX messages_conversation_time ON messages(conversation, sent_at_ns);

CREATE TABLE consent (
    entity_type INTEGER NOT NULL,          -- 1 conversation, 2 inbox, 3 address
    entity TEXT NOT NULL,
    state INTEGER NOT NULL,                -- 1 unknown, 2 allowed, 3 denied
    updated_at_ns INTEGER NOT NULL,
    PRIMARY KEY (entity_type, entity)
) WITHOUT ROWID;

CREATE TABLE preferences (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    updated_at_ns INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
"#,
    // 2: the messaging client's positions: a cursor per node topic (a group's messages, this
    // installation's welcomes) and the time of per-conversation chores, each written in the
    // same transaction as the MLS state change it follows.
    r#"
CREATE TABLE cursors (
    topic TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // 3: history sync: each sync-group message handled, with its state and attempts, so a
    // crash or a dead server retries and nothing is imported twice.
    r#"
CREATE TABLE sync_messages (
    id BLOB PRIMARY KEY,
    state INTEGER NOT NULL,          -- 1 pending, 2 processed, 3 failed
    attempts INTEGER NOT NULL,
    last_error TEXT,
    updated_at_ns INTEGER NOT NULL
) WITHOUT ROWID;
"#,
];

/// The messages-by-conversation-and-time index, which large imports drop and rebuild (a sorted
/// build is several times cheaper than a million scattered inserts).
pub(crate) const MESSAGES_TIME_INDEX: &str =
    "CREATE INDEX messages_conversation_time ON messages(conversation, sent_at_ns)";
pub(crate) const DROP_MESSAGES_TIME_INDEX: &str = "DROP INDEX messages_conversation_time";

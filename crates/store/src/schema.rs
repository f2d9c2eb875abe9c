//! Versioned migrations, applied in order inside one transaction each; `PRAGMA user_version`
//! records how many have run.

use crate::{Result, Store};

/// One schema step: its SQL, then (in the same transaction) an optional Rust step for what SQL
/// cannot do well, such as taking key strings apart.
pub(crate) struct Migration {
    pub sql: &'static str,
    pub then: Option<fn(&Store) -> Result<()>>,
}

const fn sql(sql: &'static str) -> Migration {
    Migration { sql, then: None }
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    // 1: conversations, messages, consent, preferences, local settings.
    sql(r#"
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
"#),
    // 2: the messaging client's positions: a cursor per node topic (a group's messages, this
    // installation's welcomes) and the time of per-conversation chores, each written in the
    // same transaction as the MLS state change it follows.
    sql(r#"
CREATE TABLE cursors (
    topic TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"#),
    // 3: history sync: each sync-group message handled, with its state and attempts, so a
    // crash or a dead server retries and nothing is imported twice.
    sql(r#"
CREATE TABLE sync_messages (
    id BLOB PRIMARY KEY,
    state INTEGER NOT NULL,          -- 1 pending, 2 processed, 3 failed
    attempts INTEGER NOT NULL,
    last_error TEXT,
    updated_at_ns INTEGER NOT NULL
) WITHOUT ROWID;
"#),
    // 4: the SDK's own state, until now key strings in `settings`, in tables of its own. The
    // rows already in `settings` move in the same transaction (see `legacy_settings.rs`).
    Migration {
        sql: r#"
-- A group's messages encrypted and stored but not yet taken by the node, published in seq
-- order (the order they were queued).
CREATE TABLE send_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BLOB NOT NULL,
    message_id BLOB NOT NULL,
    data BLOB NOT NULL,                 -- the MLS message, published as it is
    UNIQUE (group_id, message_id)
);

-- Welcomes of this installation's confirmed commits, waiting to reach the installations they
-- add.
CREATE TABLE welcome_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BLOB NOT NULL,
    welcome BLOB NOT NULL               -- the SDK's record: the welcome and its recipients
);
CREATE INDEX welcome_outbox_group ON welcome_outbox(group_id, seq);

-- This installation's staged commit in a group, until the group's channel confirms it or a
-- rival commit of the same epoch replaces it.
CREATE TABLE pending_commits (
    group_id BLOB PRIMARY KEY,
    commit_id BLOB NOT NULL,            -- its message id (MLS cannot open its own commits)
    commit_data BLOB NOT NULL,          -- the MLS message, published again when in doubt
    welcome BLOB                        -- the SDK's welcome record, when it adds installations
) WITHOUT ROWID;

-- Preference updates (consent, the HMAC key) waiting to go out over the sync group.
CREATE TABLE preference_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    updates BLOB NOT NULL               -- the SDK's encoded updates
);

-- This installation's history requests, by pin, until their reply window closes.
CREATE TABLE sync_requests (
    pin TEXT PRIMARY KEY,
    sent_at_ns INTEGER NOT NULL,
    answered_at_ns INTEGER,             -- when the first reply was imported; NULL: waiting
    request BLOB NOT NULL               -- the SDK's record of what was asked for
) WITHOUT ROWID;

-- Requests of the inbox's other installations that this one answered (never twice).
CREATE TABLE sync_answers_sent (
    pin TEXT PRIMARY KEY,
    sent_at_ns INTEGER NOT NULL
) WITHOUT ROWID;

-- Every reply to a request of ours that was imported here.
CREATE TABLE sync_imports (
    pin TEXT NOT NULL,
    message_id BLOB NOT NULL,           -- the sync message that announced the archive
    imported_at_ns INTEGER NOT NULL,
    record BLOB NOT NULL,               -- the SDK's record of the import and its report
    PRIMARY KEY (pin, message_id)
) WITHOUT ROWID;

-- Device-sync work left to do (a crash or a dead node interrupted it): a row per raised flag.
CREATE TABLE device_sync_flags (
    flag INTEGER PRIMARY KEY            -- 1 HMAC key rotation pending, 2 history request wanted
);

-- The inbox's HMAC secret: one row (never in archives).
CREATE TABLE hmac_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL                   -- the SDK's encoded key update
);
"#,
        then: Some(crate::legacy_settings::move_to_tables),
    },
    // 5: this installation's application messages as sent, until the group's channel shows
    // them. MLS cannot open its own messages, so the channel tells ours by the hash of the MLS
    // message; one the node ordered after a commit this installation had not applied (members
    // that commit added cannot read it) is encrypted again, in the current epoch, from here.
    sql(r#"
CREATE TABLE sent_messages (
    group_id BLOB NOT NULL,
    payload_hash BLOB NOT NULL,         -- the MLS message's hash (the v1 message id)
    message_id BLOB NOT NULL,           -- the id every member derives from the plaintext
    plaintext BLOB NOT NULL,            -- the encoded envelope, encrypted again as it is
    epoch INTEGER NOT NULL,             -- the epoch it was encrypted in
    PRIMARY KEY (group_id, payload_hash)
) WITHOUT ROWID;
"#),
    // 6: disappearing messages. A conversation's setting as its group's metadata says (both
    // NULL: off); each message's expiry, fixed when it is stored (NULL: it never expires).
    // And the encrypted files of remote attachments held locally.
    sql(r#"
ALTER TABLE conversations ADD COLUMN disappear_from_ns INTEGER;
ALTER TABLE conversations ADD COLUMN disappear_in_ns INTEGER;
ALTER TABLE messages ADD COLUMN expire_at_ns INTEGER;
CREATE INDEX messages_expiry ON messages(expire_at_ns) WHERE expire_at_ns IS NOT NULL;

-- Remote attachments' encrypted files held here (sent from here, fetched, or carried by an
-- archive with element `attachments`), by the digest their messages name.
CREATE TABLE attachment_files (
    seq INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,        -- lowercase hex SHA-256 of the encrypted file
    data BLOB NOT NULL                  -- the encrypted file, as uploaded
);
"#),
];

/// The messages-by-conversation-and-time index, which large imports drop and rebuild (a sorted
/// build is several times cheaper than a million scattered inserts).
pub(crate) const MESSAGES_TIME_INDEX: &str =
    "CREATE INDEX messages_conversation_time ON messages(conversation, sent_at_ns)";
pub(crate) const DROP_MESSAGES_TIME_INDEX: &str = "DROP INDEX messages_conversation_time";

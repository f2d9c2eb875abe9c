//! Reads over the whole store: consistent snapshots for exports, counts and dumps.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::consent::{consent_from_row, NOT_SYNC_CONSENT};
use crate::conversations::{conversation_from_row, CONVERSATION_COLS};
use crate::{
    ConsentEntity, ConsentRecord, ContentType, Conversation, DeliveryStatus, Error, Message,
    MessageKind, Result, Store,
};

impl Store {
    pub fn count(&self, table: Table) -> Result<u64> {
        Ok(self
            .conn
            .query_row(&format!("SELECT count(*) FROM {}", table.name()), [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// A consistent read-only view of the store for an export or an import preview.
    pub fn snapshot(&self) -> Result<Snapshot<'_>> {
        let tx = self.conn.unchecked_transaction()?;
        // Reading one row pins the snapshot now, not at the first query of the export.
        tx.query_row("SELECT count(*) FROM settings", [], |_| Ok(()))?;
        Ok(Snapshot { tx })
    }

    /// Every row of the app's tables in a stable order, as text: two stores with the same dump
    /// hold the same data (tests compare dumps before and after failed imports).
    pub fn dump(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (table, order) in [
            ("conversations", "seq"),
            ("messages", "id"),
            ("senders", "seq"),
            ("content_types", "seq"),
            ("consent", "entity_type, entity"),
            ("preferences", "key"),
            ("settings", "key"),
            ("send_outbox", "seq"),
            ("welcome_outbox", "seq"),
            ("pending_commits", "group_id"),
            ("sent_messages", "group_id, payload_hash"),
            ("preference_outbox", "seq"),
            ("sync_requests", "pin"),
            ("sync_answers_sent", "pin"),
            ("sync_imports", "pin, message_id"),
            ("device_sync_flags", "flag"),
            ("hmac_key", "id"),
            ("attachment_files", "seq"),
        ] {
            let mut stmt = self
                .conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))?;
            let n = stmt.column_count();
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let mut line = format!("{table}:");
                for i in 0..n {
                    line.push_str(&format!(" {:?}", r.get_ref(i)?));
                }
                out.push(line);
            }
        }
        Ok(out)
    }
}

/// The app tables, for counting.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Conversations,
    Messages,
    Consent,
    Preferences,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Conversations => "conversations",
            Table::Messages => "messages",
            Table::Consent => "consent",
            Table::Preferences => "preferences",
        }
    }
}

/// A message's encoded content and its parameters (see [`Snapshot::contents_of_type`]).
pub type ContentAndParameters = (Vec<u8>, Option<Vec<u8>>);

/// A read transaction for exports. See [`Store::snapshot`].
pub struct Snapshot<'a> {
    pub(crate) tx: Transaction<'a>,
}

impl Snapshot<'_> {
    /// Conversations (never the sync conversation) with a message in `[start, end)` or created
    /// in it.
    pub fn conversations(&self, start: Option<i64>, end: Option<i64>) -> Result<Vec<Conversation>> {
        let (s, e) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {CONVERSATION_COLS} FROM conversations c WHERE c.kind != 3 AND (
                 (c.created_at_ns >= ?1 AND c.created_at_ns < ?2)
                 OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation = c.seq
                            AND m.sent_at_ns >= ?1 AND m.sent_at_ns < ?2))
             ORDER BY c.seq"
        ))?;
        let rows = stmt.query_map(params![s, e], conversation_from_row)?;
        rows.map(|r| r?).collect()
    }

    /// How many messages of these conversations fall in `[start, end)` (without those that
    /// will disappear, when `exclude_expiring`).
    pub fn count_messages(
        &self,
        conversations: &[Conversation],
        start: Option<i64>,
        end: Option<i64>,
        exclude_expiring: bool,
    ) -> Result<u64> {
        let (s, e) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
        // Without the expiry condition the count reads the (conversation, time) index alone;
        // with it, each row too.
        let mut stmt = self.tx.prepare(if exclude_expiring {
            "SELECT count(*) FROM messages m JOIN conversations c ON c.seq = m.conversation
             WHERE c.id = ?1 AND m.sent_at_ns >= ?2 AND m.sent_at_ns < ?3
               AND m.expire_at_ns IS NULL"
        } else {
            "SELECT count(*) FROM messages m JOIN conversations c ON c.seq = m.conversation
             WHERE c.id = ?1 AND m.sent_at_ns >= ?2 AND m.sent_at_ns < ?3"
        })?;
        let mut total = 0u64;
        for c in conversations {
            total += stmt.query_row(params![c.id, s, e], |r| r.get::<_, i64>(0))? as u64;
        }
        Ok(total)
    }

    /// Calls `f` for every message of these conversations in `[start, end)` (without those
    /// that will disappear, when `exclude_expiring`), in id order (the table's own order, so
    /// this is a sequential scan).
    pub fn for_each_message<E: From<Error>>(
        &self,
        conversations: &[Conversation],
        start: Option<i64>,
        end: Option<i64>,
        exclude_expiring: bool,
        mut f: impl FnMut(Message) -> Result<(), E>,
    ) -> Result<(), E> {
        let (s, e) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
        let mut ids: HashMap<i64, &[u8]> = HashMap::new();
        {
            let mut stmt = self
                .tx
                .prepare("SELECT seq, id FROM conversations")
                .map_err(Error::from)?;
            let mut rows = stmt.query([]).map_err(Error::from)?;
            let wanted: std::collections::HashSet<&[u8]> =
                conversations.iter().map(|c| c.id.as_slice()).collect();
            while let Some(r) = rows.next().map_err(Error::from)? {
                let id: Vec<u8> = r.get(1).map_err(Error::from)?;
                if let Some(w) = wanted.get(id.as_slice()) {
                    ids.insert(r.get(0).map_err(Error::from)?, w);
                }
            }
        }
        let senders: HashMap<i64, (String, Vec<u8>)> = self
            .lookup("SELECT seq, inbox_id, installation_id FROM senders", |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .map_err(Error::from)?;
        let ctypes: HashMap<i64, ContentType> = self
            .lookup(
                "SELECT seq, authority, type_id, major, minor FROM content_types",
                |r| {
                    Ok(ContentType {
                        authority: r.get(1)?,
                        type_id: r.get(2)?,
                        major: r.get(3)?,
                        minor: r.get(4)?,
                    })
                },
            )
            .map_err(Error::from)?;
        let mut stmt = self
            .tx
            .prepare(
                "SELECT conversation, id, sender, sent_at_ns, kind, content_type, content,
                        fallback, parameters, reference_id, delivery_status, expire_at_ns
                 FROM messages WHERE sent_at_ns >= ?1 AND sent_at_ns < ?2
                   AND (NOT ?3 OR expire_at_ns IS NULL) ORDER BY id",
            )
            .map_err(Error::from)?;
        let mut rows = stmt
            .query(params![s, e, exclude_expiring])
            .map_err(Error::from)?;
        while let Some(r) = rows.next().map_err(Error::from)? {
            let Some(conv) = ids.get(&r.get::<_, i64>(0).map_err(Error::from)?) else {
                continue;
            };
            let m = (|| -> Result<Message> {
                let (inbox, installation) = senders
                    .get(&r.get::<_, i64>(2)?)
                    .ok_or(Error::Corrupt("messages.sender"))?;
                let content_type = ctypes
                    .get(&r.get::<_, i64>(5)?)
                    .ok_or(Error::Corrupt("messages.content_type"))?;
                Ok(Message {
                    id: r.get(1)?,
                    conversation_id: conv.to_vec(),
                    sender_inbox_id: inbox.clone(),
                    sender_installation_id: installation.clone(),
                    sent_at_ns: r.get(3)?,
                    kind: MessageKind::from_i64(r.get(4)?).unwrap_or(MessageKind::Application),
                    content_type: content_type.clone(),
                    content: r.get(6)?,
                    fallback: r.get(7)?,
                    parameters: r.get(8)?,
                    reference_id: r.get(9)?,
                    delivery_status: DeliveryStatus::from_i64(r.get(10)?)
                        .unwrap_or(DeliveryStatus::Published),
                    expire_at_ns: r.get(11)?,
                })
            })()?;
            f(m)?;
        }
        Ok(())
    }

    /// The contents and parameters of the messages of one content type (any version) among
    /// those [`Snapshot::for_each_message`] would give, in id order.
    pub fn contents_of_type(
        &self,
        conversations: &[Conversation],
        start: Option<i64>,
        end: Option<i64>,
        exclude_expiring: bool,
        authority: &str,
        type_id: &str,
    ) -> Result<Vec<ContentAndParameters>> {
        let (s, e) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
        let wanted: std::collections::HashSet<&[u8]> =
            conversations.iter().map(|c| c.id.as_slice()).collect();
        let mut stmt = self.tx.prepare(
            "SELECT c.id, m.content, m.parameters FROM messages m
             JOIN content_types t ON t.seq = m.content_type
             JOIN conversations c ON c.seq = m.conversation
             WHERE t.authority = ?1 AND t.type_id = ?2
               AND m.sent_at_ns >= ?3 AND m.sent_at_ns < ?4
               AND (NOT ?5 OR m.expire_at_ns IS NULL)
             ORDER BY m.id",
        )?;
        let mut rows = stmt.query(params![authority, type_id, s, e, exclude_expiring])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let conv: Vec<u8> = r.get(0)?;
            if wanted.contains(conv.as_slice()) {
                out.push((r.get(1)?, r.get(2)?));
            }
        }
        Ok(out)
    }

    /// A table of small rows keyed by their `seq` (column 0).
    fn lookup<T>(
        &self,
        sql: &str,
        f: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<HashMap<i64, T>> {
        let mut stmt = self.tx.prepare(sql)?;
        let mut rows = stmt.query([])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            out.insert(r.get(0)?, f(r)?);
        }
        Ok(out)
    }

    /// The conversation with this id (the sync conversation included), if stored.
    pub fn conversation(&self, id: &[u8]) -> Result<Option<Conversation>> {
        self.tx
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLS} FROM conversations WHERE id = ?1"
            ))?
            .query_row([id], conversation_from_row)
            .optional()?
            .transpose()
    }

    /// Whether a message with this id is stored (in any conversation).
    pub fn has_message(&self, id: &[u8]) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM messages WHERE id = ?1)")?
            .query_row([id], |r| r.get(0))?)
    }

    /// The stored consent record of one entity, if any.
    pub fn consent_record(
        &self,
        entity_type: ConsentEntity,
        entity: &str,
    ) -> Result<Option<ConsentRecord>> {
        self.tx
            .prepare_cached(
                "SELECT entity_type, entity, state, updated_at_ns FROM consent
                 WHERE entity_type = ?1 AND entity = ?2",
            )?
            .query_row(params![entity_type.as_i64(), entity], consent_from_row)
            .optional()?
            .transpose()
    }

    pub fn consent(&self) -> Result<Vec<ConsentRecord>> {
        let mut stmt = self.tx.prepare(&format!(
            "SELECT entity_type, entity, state, updated_at_ns FROM consent
             WHERE {NOT_SYNC_CONSENT} ORDER BY entity_type, entity"
        ))?;
        let rows = stmt.query_map([], consent_from_row)?;
        rows.map(|r| r?).collect()
    }
}

//! The messages table, with the senders and content types it refers to by number.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{
    ContentType, DeliveryStatus, DisappearingSettings, Error, Message, MessageKind, Result, Store,
};

/// Which messages to list.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub conversation_id: Option<Vec<u8>>,
    pub sent_after_ns: Option<i64>,
    pub sent_before_ns: Option<i64>,
    pub limit: Option<u64>,
    /// Include the hidden sync conversations' messages (the SDK's own use; never shown).
    pub include_sync: bool,
}

pub(crate) const MESSAGE_COLS: &str =
    "m.id, c.id, s.inbox_id, s.installation_id, m.sent_at_ns, m.kind, \
     t.authority, t.type_id, t.major, t.minor, m.content, m.fallback, m.parameters, \
     m.reference_id, m.delivery_status, m.expire_at_ns";
pub(crate) const MESSAGE_FROM: &str = "messages m JOIN conversations c ON c.seq = m.conversation \
     JOIN senders s ON s.seq = m.sender JOIN content_types t ON t.seq = m.content_type";

impl Store {
    /// Sets a stored message's delivery status; false when there is no such message.
    pub fn set_delivery_status(&self, id: &[u8], status: DeliveryStatus) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("UPDATE messages SET delivery_status = ?2 WHERE id = ?1")?
            .execute(params![id, status.as_i64()])?
            > 0)
    }

    /// Inserts a message into an existing conversation; false when its id is already stored.
    pub fn insert_message(&self, m: &Message) -> Result<bool> {
        let (conv, disappearing) = self
            .conversation_seq(&m.conversation_id)?
            .ok_or_else(|| Error::NoSuchConversation(hex::encode(&m.conversation_id)))?;
        let sender = intern_sender(&self.conn, &m.sender_inbox_id, &m.sender_installation_id)?;
        let ctype = intern_content_type(&self.conn, &m.content_type)?;
        let expire_at = expiry(m, disappearing);
        let added = insert_message(&self.conn, conv, sender, ctype, m, expire_at)?;
        if added {
            self.conn.prepare_cached(
                "UPDATE conversations SET last_message_ns = max(coalesce(last_message_ns, ?2), ?2)
                 WHERE seq = ?1")?.execute(params![conv, m.sent_at_ns],
            )?;
        }
        Ok(added)
    }

    /// Messages in sending order (sent_at_ns, then arrival).
    pub fn messages(&self, f: &MessageFilter) -> Result<Vec<Message>> {
        let mut sql = format!("SELECT {MESSAGE_COLS} FROM {MESSAGE_FROM} WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(id) = &f.conversation_id {
            sql.push_str(" AND c.id = ?");
            args.push(id.clone().into());
        }
        if !f.include_sync {
            sql.push_str(" AND c.kind != 3");
        }
        if let Some(t) = f.sent_after_ns {
            sql.push_str(" AND m.sent_at_ns > ?");
            args.push(t.into());
        }
        if let Some(t) = f.sent_before_ns {
            sql.push_str(" AND m.sent_at_ns < ?");
            args.push(t.into());
        }
        sql.push_str(" ORDER BY m.sent_at_ns, m.id");
        if let Some(l) = f.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), message_from_row)?;
        rows.map(|r| r?).collect()
    }

    /// When a message of this kind sent now in this conversation would expire, under the
    /// conversation's current setting (what [`Store::insert_message`] stamps on a message
    /// that carries no expiry).
    pub fn expiry_for(
        &self,
        conversation_id: &[u8],
        sent_at_ns: i64,
        kind: MessageKind,
    ) -> Result<Option<i64>> {
        Ok(self
            .conversation_seq(conversation_id)?
            .and_then(|(_, d)| d)
            .and_then(|d| d.expire_at(sent_at_ns, kind)))
    }

    /// Deletes every message whose expiry is at or before `now_ns`, in one transaction; returns
    /// what was deleted as (conversation id, message id) pairs.
    pub fn delete_expired_messages(&self, now_ns: i64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let tx = self.conn.unchecked_transaction()?;
        let gone: Vec<(Vec<u8>, Vec<u8>)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT c.id, m.id FROM messages m JOIN conversations c ON c.seq = m.conversation
                 WHERE m.expire_at_ns IS NOT NULL AND m.expire_at_ns <= ?1",
            )?;
            let rows = stmt.query_map([now_ns], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if !gone.is_empty() {
            tx.prepare_cached(
                "DELETE FROM messages WHERE expire_at_ns IS NOT NULL AND expire_at_ns <= ?1",
            )?
            .execute([now_ns])?;
        }
        tx.commit()?;
        Ok(gone)
    }

    /// The earliest expiry of a stored message, if any will expire.
    pub fn next_expiry(&self) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT min(expire_at_ns) FROM messages WHERE expire_at_ns IS NOT NULL",
            )?
            .query_row([], |r| r.get(0))?)
    }

    pub fn message(&self, id: &[u8]) -> Result<Option<Message>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLS} FROM {MESSAGE_FROM} WHERE m.id = ?1"
            ))?
            .query_row([id], message_from_row)
            .optional()?
            .transpose()
    }
}

pub(crate) fn insert_message(
    conn: &Connection,
    conv: i64,
    sender: i64,
    content_type: i64,
    m: &Message,
    expire_at_ns: Option<i64>,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT OR IGNORE INTO messages (id, conversation, sender, sent_at_ns, kind,
                 content_type, content, fallback, parameters, reference_id, delivery_status,
                 expire_at_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            m.id,
            conv,
            sender,
            m.sent_at_ns,
            m.kind.as_i64(),
            content_type,
            m.content,
            m.fallback,
            m.parameters,
            m.reference_id,
            m.delivery_status.as_i64(),
            expire_at_ns
        ])?
        > 0)
}

/// The expiry a message is stored with: its own, else its conversation's setting's.
pub(crate) fn expiry(m: &Message, disappearing: Option<DisappearingSettings>) -> Option<i64> {
    m.expire_at_ns
        .or_else(|| disappearing.and_then(|d| d.expire_at(m.sent_at_ns, m.kind)))
}

/// The number of a sender (inbox and installation), adding it when new.
pub(crate) fn intern_sender(conn: &Connection, inbox: &str, installation: &[u8]) -> Result<i64> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO senders (inbox_id, installation_id) VALUES (?1, ?2)",
    )?
    .execute(params![inbox, installation])?;
    Ok(conn
        .prepare_cached("SELECT seq FROM senders WHERE inbox_id = ?1 AND installation_id = ?2")?
        .query_row(params![inbox, installation], |r| r.get(0))?)
}

/// The number of a content type, adding it when new.
pub(crate) fn intern_content_type(conn: &Connection, t: &ContentType) -> Result<i64> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO content_types (authority, type_id, major, minor)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![t.authority, t.type_id, t.major, t.minor])?;
    Ok(conn
        .prepare_cached(
            "SELECT seq FROM content_types
             WHERE authority = ?1 AND type_id = ?2 AND major = ?3 AND minor = ?4",
        )?
        .query_row(params![t.authority, t.type_id, t.major, t.minor], |r| {
            r.get(0)
        })?)
}

pub(crate) fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Message>> {
    let conv: Vec<u8> = r.get(1)?;
    Ok(Ok(message_fields(r, 0, conv)?))
}

/// Reads a message whose id is in column `id_col` and whose other fields are in columns 2..=15
/// (the layout of MESSAGE_COLS).
fn message_fields(
    r: &Row<'_>,
    id_col: usize,
    conversation_id: Vec<u8>,
) -> rusqlite::Result<Message> {
    let kind = MessageKind::from_i64(r.get(5)?).unwrap_or(MessageKind::Application);
    let delivery = DeliveryStatus::from_i64(r.get(14)?).unwrap_or(DeliveryStatus::Published);
    Ok(Message {
        id: r.get(id_col)?,
        conversation_id,
        sender_inbox_id: r.get(2)?,
        sender_installation_id: r.get(3)?,
        sent_at_ns: r.get(4)?,
        kind,
        content_type: ContentType {
            authority: r.get(6)?,
            type_id: r.get(7)?,
            major: r.get(8)?,
            minor: r.get(9)?,
        },
        content: r.get(10)?,
        fallback: r.get(11)?,
        parameters: r.get(12)?,
        reference_id: r.get(13)?,
        delivery_status: delivery,
        expire_at_ns: r.get(15)?,
    })
}

//! The conversations table.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{
    ConsentState, Conversation, ConversationKind, DisappearingSettings, Error, Membership, Result,
    Store,
};

/// Which conversations to list.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub kind: Option<ConversationKind>,
    /// Include the hidden sync conversation (never listed by default).
    pub include_sync: bool,
    pub active: Option<bool>,
    pub consent: Option<ConsentState>,
}

pub(crate) const CONVERSATION_COLS: &str =
    "seq, id, kind, created_at_ns, name, description, image_url, \
     creator_inbox_id, dm_peer_inbox_id, dm_id, membership, last_message_ns, \
     disappear_from_ns, disappear_in_ns";

impl Store {
    /// Updates a conversation's name, description and image url.
    pub fn set_conversation_metadata(
        &self,
        id: &[u8],
        name: &str,
        description: &str,
        image_url: &str,
    ) -> Result<()> {
        self.conn.prepare_cached(
            "UPDATE conversations SET name = ?2, description = ?3, image_url = ?4 WHERE id = ?1")?.execute(params![id, name, description, image_url],
        )?;
        Ok(())
    }

    /// Takes the group-metadata fields of `c` (name, description, image url, disappearing
    /// messages) into the stored row with its id.
    pub fn update_conversation_metadata(&self, c: &Conversation) -> Result<()> {
        self.set_conversation_metadata(&c.id, &c.name, &c.description, &c.image_url)?;
        self.set_disappearing(&c.id, c.disappearing)
    }

    /// Sets (or with `None` turns off) a conversation's disappearing messages. Messages
    /// stored before keep their expiry; messages stored after take the new setting.
    pub fn set_disappearing(&self, id: &[u8], d: Option<DisappearingSettings>) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE conversations SET disappear_from_ns = ?2, disappear_in_ns = ?3 WHERE id = ?1",
            )?
            .execute(params![id, d.map(|d| d.from_ns), d.map(|d| d.in_ns)])?;
        Ok(())
    }

    /// Inserts a conversation; false when one with this id exists (it is left as it is).
    pub fn insert_conversation(&self, c: &Conversation) -> Result<bool> {
        insert_conversation(&self.conn, c)
    }

    pub fn conversation(&self, id: &[u8]) -> Result<Option<Conversation>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLS} FROM conversations WHERE id = ?1"
            ))?
            .query_row([id], conversation_from_row)
            .optional()?
            .transpose()
    }

    pub fn set_membership(&self, id: &[u8], m: Membership) -> Result<()> {
        let n = self
            .conn
            .prepare_cached("UPDATE conversations SET membership = ?2 WHERE id = ?1")?
            .execute(params![id, m.as_i64()])?;
        if n == 0 {
            return Err(Error::NoSuchConversation(hex::encode(id)));
        }
        Ok(())
    }

    /// Conversations, newest activity first.
    pub fn conversations(&self, f: &ConversationFilter) -> Result<Vec<Conversation>> {
        let mut sql = format!(
            "SELECT {} FROM conversations c WHERE 1=1",
            CONVERSATION_COLS
                .split(", ")
                .map(|c| format!("c.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut args: Vec<i64> = Vec::new();
        if let Some(k) = f.kind {
            sql.push_str(" AND c.kind = ?");
            args.push(k.as_i64());
        } else if !f.include_sync {
            sql.push_str(" AND c.kind != ?");
            args.push(ConversationKind::Sync.as_i64());
        }
        if let Some(a) = f.active {
            sql.push_str(if a {
                " AND c.membership = ?"
            } else {
                " AND c.membership != ?"
            });
            args.push(Membership::Active.as_i64());
        }
        if let Some(state) = f.consent {
            sql.push_str(
                " AND coalesce((SELECT state FROM consent WHERE entity_type = 1 \
                 AND entity = lower(hex(c.id))), 1) = ?",
            );
            args.push(state.as_i64());
        }
        sql.push_str(" ORDER BY coalesce(c.last_message_ns, c.created_at_ns) DESC, c.seq");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), conversation_from_row)?;
        rows.map(|r| r?).collect()
    }

    /// A conversation's row number and disappearing setting.
    pub(crate) fn conversation_seq(
        &self,
        id: &[u8],
    ) -> Result<Option<(i64, Option<DisappearingSettings>)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT seq, disappear_from_ns, disappear_in_ns FROM conversations WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get(0)?,
                    DisappearingSettings::from_parts(r.get(1)?, r.get(2)?),
                ))
            })
            .optional()?)
    }
}

pub(crate) fn insert_conversation(conn: &Connection, c: &Conversation) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT OR IGNORE INTO conversations (id, kind, created_at_ns, name, description,
                 image_url, creator_inbox_id, dm_peer_inbox_id, dm_id, membership, last_message_ns,
                 disappear_from_ns, disappear_in_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            c.id,
            c.kind.as_i64(),
            c.created_at_ns,
            c.name,
            c.description,
            c.image_url,
            c.creator_inbox_id,
            c.dm_peer_inbox_id,
            c.dm_id,
            c.membership.as_i64(),
            c.last_message_ns,
            c.disappearing.map(|d| d.from_ns),
            c.disappearing.map(|d| d.in_ns)
        ])?
        > 0)
}

pub(crate) fn conversation_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Conversation>> {
    let kind = r.get::<_, i64>(2)?;
    let membership = r.get::<_, i64>(10)?;
    let (Some(kind), Some(membership)) = (
        ConversationKind::from_i64(kind),
        Membership::from_i64(membership),
    ) else {
        return Ok(Err(Error::Corrupt("conversations")));
    };
    Ok(Ok(Conversation {
        id: r.get(1)?,
        kind,
        created_at_ns: r.get(3)?,
        name: r.get(4)?,
        description: r.get(5)?,
        image_url: r.get(6)?,
        creator_inbox_id: r.get(7)?,
        dm_peer_inbox_id: r.get(8)?,
        dm_id: r.get(9)?,
        membership,
        last_message_ns: r.get(11)?,
        disappearing: DisappearingSettings::from_parts(r.get(12)?, r.get(13)?),
    }))
}

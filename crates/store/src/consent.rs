//! Consent (who and what this inbox allows or denies) and the synced preferences.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{ConsentEntity, ConsentRecord, ConsentState, Error, Result, Store};

/// Consent rows that are not about a hidden sync conversation (stores written before sync
/// conversations stopped getting consent rows may hold some).
pub(crate) const NOT_SYNC_CONSENT: &str = "NOT (entity_type = 1 AND entity IN \
     (SELECT lower(hex(id)) FROM conversations WHERE kind = 3))";

impl Store {
    // ---- consent --------------------------------------------------------------------------

    /// Records consent if it is newer than what is stored; true when it was applied.
    pub fn set_consent(&self, c: &ConsentRecord) -> Result<bool> {
        set_consent(&self.conn, c)
    }

    pub fn consent(
        &self,
        entity_type: ConsentEntity,
        entity: &str,
    ) -> Result<Option<ConsentRecord>> {
        self.conn
            .prepare_cached(
                "SELECT entity_type, entity, state, updated_at_ns FROM consent
                 WHERE entity_type = ?1 AND entity = ?2",
            )?
            .query_row(params![entity_type.as_i64(), entity], consent_from_row)
            .optional()?
            .transpose()
    }

    /// Every consent record a person made (never one about a hidden sync conversation).
    pub fn consent_list(&self) -> Result<Vec<ConsentRecord>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT entity_type, entity, state, updated_at_ns FROM consent
             WHERE {NOT_SYNC_CONSENT} ORDER BY entity_type, entity"
        ))?;
        let rows = stmt.query_map([], consent_from_row)?;
        rows.map(|r| r?).collect()
    }

    // ---- preferences ----------------------------------------------------------------------

    pub fn preference(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value, updated_at_ns FROM preferences WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Stores a preference if newer than the stored one; true when applied.
    pub fn set_preference(&self, key: &str, value: &[u8], updated_at_ns: i64) -> Result<bool> {
        Ok(self.conn.prepare_cached(
            "INSERT INTO preferences(key, value, updated_at_ns) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at_ns = excluded.updated_at_ns
             WHERE excluded.updated_at_ns > preferences.updated_at_ns")?.execute(params![key, value, updated_at_ns],
        )? > 0)
    }
}

pub(crate) fn set_consent(conn: &Connection, c: &ConsentRecord) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO consent (entity_type, entity, state, updated_at_ns) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(entity_type, entity) DO UPDATE
                 SET state = excluded.state, updated_at_ns = excluded.updated_at_ns
                 WHERE excluded.updated_at_ns > consent.updated_at_ns",
        )?
        .execute(params![
            c.entity_type.as_i64(),
            c.entity,
            c.state.as_i64(),
            c.updated_at_ns
        ])?
        > 0)
}

pub(crate) fn consent_from_row(r: &Row<'_>) -> rusqlite::Result<Result<ConsentRecord>> {
    let (Some(entity_type), Some(state)) = (
        ConsentEntity::from_i64(r.get(0)?),
        ConsentState::from_i64(r.get(2)?),
    ) else {
        return Ok(Err(Error::Corrupt("consent")));
    };
    Ok(Ok(ConsentRecord {
        entity_type,
        entity: r.get(1)?,
        state,
        updated_at_ns: r.get(3)?,
    }))
}

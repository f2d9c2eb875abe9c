//! Small local settings (key strings to bytes) and the cursors: how far each node topic has
//! been processed.

use rusqlite::{params, OptionalExtension};

use crate::{Result, Store};

impl Store {
    // ---- settings -------------------------------------------------------------------------

    pub fn setting(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_setting(&self, key: &str, value: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO settings(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    // ---- cursors --------------------------------------------------------------------------

    /// A named position (0 when never set): how far a node topic has been processed, or when a
    /// chore last ran.
    pub fn cursor(&self, topic: &str) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT value FROM cursors WHERE topic = ?1", [topic], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0))
    }

    pub fn set_cursor(&self, topic: &str, value: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO cursors(topic, value) VALUES (?1, ?2)
             ON CONFLICT(topic) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![topic, value])?;
        Ok(())
    }

    /// The settings whose keys start with `prefix`, in key order.
    pub fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut stmt = self.conn.prepare(
            "SELECT key, value FROM settings WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_setting(&self, key: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM settings WHERE key = ?1")?
            .execute([key])?;
        Ok(())
    }
}

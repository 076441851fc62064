//! Services the gate knows: the version of an artifact each appeared in.

use rusqlite::{OptionalExtension, params};

use crate::{Ledger, LedgerError};

impl Ledger {
    /// Declares that `service` appeared in `since` of `artifact`.
    pub fn set_service(
        &mut self,
        name: &str,
        artifact: &str,
        since: &str,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT INTO services (name, artifact, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET artifact = excluded.artifact, since = excluded.since",
                params![name, artifact, since],
            )
            .map_err(LedgerError::sqlite(&self.path))?;
        Ok(())
    }

    /// The artifact and version a service appeared in, if declared.
    pub fn service(&self, name: &str) -> Result<Option<(String, String)>, LedgerError> {
        self.conn
            .query_row(
                "SELECT artifact, since FROM services WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))
    }
}

//! Services the gate knows: the version of an artifact each appeared in.

use rusqlite::{OptionalExtension, params};

use crate::{Ledger, LedgerError};

/// Where a service appeared: the first version of an artifact that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRow {
    /// The artifact.
    pub artifact: String,
    /// The version it appeared in, as declared (the gate parses it).
    pub since: String,
}

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
    pub fn service(&self, name: &str) -> Result<Option<ServiceRow>, LedgerError> {
        self.conn
            .query_row(
                "SELECT artifact, since FROM services WHERE name = ?1",
                params![name],
                |r| {
                    Ok(ServiceRow {
                        artifact: r.get(0)?,
                        since: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))
    }
}

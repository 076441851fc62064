//! Registered artifacts and versions.

use haifu_core::{Manifest, Version};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::{Ledger, LedgerError, now_text};

/// What [`Ledger::record_version`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new row was written.
    New,
    /// The same name, version and content was already there; nothing changed.
    /// Holds the manifest on record, which is the one to show.
    Existing(Box<Manifest>),
}

/// One registered version, as listed by `haifu versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRow {
    /// Artifact name.
    pub name: String,
    /// Semver version.
    pub version: String,
    /// Uncompressed size.
    pub size: u64,
    /// Compressed size in the store.
    pub stored_size: u64,
    /// sha3-256 of the content.
    pub sha3_256: String,
    /// When it was registered.
    pub created_at: String,
}

/// SQLite integers are signed 64-bit; sizes beyond 8 EiB do not occur.
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Ledger {
    /// Records a signed manifest. The same name and version with the same
    /// digest is a no-op that returns the manifest on record; with another
    /// digest it is refused with [`LedgerError::Conflict`] and nothing is
    /// written. The row and its `registered` event commit together.
    pub fn record_version(&mut self, manifest: &Manifest) -> Result<Recorded, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let b = &manifest.body;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT v.manifest FROM versions v JOIN artifacts a ON a.id = v.artifact_id
                 WHERE a.name = ?1 AND v.version = ?2",
                params![b.name, b.version],
                |r| r.get(0),
            )
            .optional()
            .map_err(&wrap)?;
        if let Some(json) = existing {
            let on_record = parse_manifest(&self.path, &json)?;
            if on_record.body.sha3_256 == b.sha3_256 {
                return Ok(Recorded::Existing(Box::new(on_record)));
            }
            return Err(LedgerError::Conflict {
                name: b.name.clone(),
                version: b.version.clone(),
                existing: on_record.body.sha3_256.to_hex(),
                offered: b.sha3_256.to_hex(),
            });
        }
        let now = now_text();
        tx.execute(
            "INSERT INTO artifacts (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![b.name, now],
        )
        .map_err(&wrap)?;
        tx.execute(
            "INSERT INTO versions (artifact_id, version, sha3_256, size, stored_size, created_at, manifest)
             SELECT id, ?2, ?3, ?4, ?5, ?6, ?7 FROM artifacts WHERE name = ?1",
            params![
                b.name,
                b.version,
                b.sha3_256.to_hex(),
                sql_int(b.size),
                sql_int(b.stored_size),
                b.created_at.to_string(),
                manifest.to_json(),
            ],
        )
        .map_err(&wrap)?;
        tx.execute(
            "INSERT INTO events (at, kind, subject, detail) VALUES (?1, 'registered', ?2, ?3)",
            params![
                now,
                format!("{}@{}", b.name, b.version),
                serde_json::json!({ "sha3_256": b.sha3_256, "size": b.size }).to_string(),
            ],
        )
        .map_err(&wrap)?;
        tx.commit().map_err(&wrap)?;
        Ok(Recorded::New)
    }

    /// The manifest of one version, if registered.
    pub fn manifest(&self, name: &str, version: &str) -> Result<Option<Manifest>, LedgerError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT v.manifest FROM versions v JOIN artifacts a ON a.id = v.artifact_id
                 WHERE a.name = ?1 AND v.version = ?2",
                params![name, version],
                |r| r.get(0),
            )
            .optional()
            .map_err(LedgerError::sqlite(&self.path))?;
        json.map(|j| parse_manifest(&self.path, &j)).transpose()
    }

    /// Registered versions, of one artifact or all: names in alphabetical
    /// order, and within a name the newest version (by semver) first.
    pub fn versions(&self, name: Option<&str>) -> Result<Vec<VersionRow>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.name, v.version, v.size, v.stored_size, v.sha3_256, v.created_at
                 FROM versions v JOIN artifacts a ON a.id = v.artifact_id
                 WHERE ?1 IS NULL OR a.name = ?1",
            )
            .map_err(&wrap)?;
        let mut rows: Vec<VersionRow> = stmt
            .query_map(params![name], |r| {
                Ok(VersionRow {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    size: r.get::<_, i64>(2)?.unsigned_abs(),
                    stored_size: r.get::<_, i64>(3)?.unsigned_abs(),
                    sha3_256: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(&wrap)?;
        rows.sort_by(|a, b| {
            a.name.cmp(&b.name).then_with(|| {
                let va = a.version.parse::<Version>().ok();
                let vb = b.version.parse::<Version>().ok();
                vb.cmp(&va)
            })
        });
        Ok(rows)
    }

    /// Every manifest on record, for consistency checks against the store.
    pub fn all_manifests(&self) -> Result<Vec<Manifest>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT manifest FROM versions ORDER BY id")
            .map_err(&wrap)?;
        let jsons: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(&wrap)?;
        jsons
            .iter()
            .map(|j| parse_manifest(&self.path, j))
            .collect()
    }
}

fn parse_manifest(path: &std::path::Path, json: &str) -> Result<Manifest, LedgerError> {
    Manifest::from_json(json.as_bytes()).map_err(|e| LedgerError::Damaged {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use haifu_core::{Compression, Digest, MANIFEST_FORMAT_V1, ManifestBody, SigningKey};

    use super::*;
    use crate::SCHEMA_VERSION;

    fn manifest(name: &str, version: &str, fill: u8) -> Manifest {
        let body = ManifestBody {
            format: MANIFEST_FORMAT_V1,
            name: name.into(),
            version: version.into(),
            size: 10,
            sha3_256: Digest::from_bytes([fill; 32]),
            created_at: "2026-11-27T12:00:00Z".parse().unwrap(),
            compression: Compression::Zstd,
            stored_size: 5,
            carousel: None,
        };
        Manifest::sign(body, &SigningKey::from_seed([1; 32]))
    }

    #[test]
    fn fresh_ledger_is_at_the_current_schema_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = l
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        l.integrity_check().unwrap();
        drop(l);
        // Re-opening applies nothing and keeps the version.
        assert_eq!(
            Ledger::open(&path).unwrap().schema_version().unwrap(),
            SCHEMA_VERSION
        );
    }

    #[test]
    fn a_newer_schema_is_refused_by_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = Ledger::open(&path).unwrap_err().to_string();
        assert!(
            e.contains("schema version 99, newer than this haifu"),
            "{e}"
        );
    }

    #[test]
    fn record_is_idempotent_and_refuses_other_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        let m = manifest("pos-app", "2.4.0", 1);
        assert_eq!(l.record_version(&m).unwrap(), Recorded::New);
        // Same content, even re-signed later: the record stands.
        let again = manifest("pos-app", "2.4.0", 1);
        assert_eq!(
            l.record_version(&again).unwrap(),
            Recorded::Existing(Box::new(m.clone()))
        );
        let e = l
            .record_version(&manifest("pos-app", "2.4.0", 2))
            .unwrap_err();
        assert!(matches!(e, LedgerError::Conflict { .. }), "{e}");
        assert_eq!(l.versions(None).unwrap().len(), 1);
        assert_eq!(l.manifest("pos-app", "2.4.0").unwrap(), Some(m));
        assert_eq!(l.manifest("pos-app", "9.9.9").unwrap(), None);
        let events: i64 = l
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 1);
    }

    #[test]
    fn versions_list_newest_first_by_semver() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        for (i, v) in ["1.2.0", "1.10.0", "1.9.0", "2.0.0-rc.1"]
            .iter()
            .enumerate()
        {
            l.record_version(&manifest("app", v, i as u8)).unwrap();
        }
        l.record_version(&manifest("aaa", "0.1.0", 9)).unwrap();
        let all: Vec<String> = l
            .versions(None)
            .unwrap()
            .into_iter()
            .map(|r| format!("{} {}", r.name, r.version))
            .collect();
        assert_eq!(
            all,
            [
                "aaa 0.1.0",
                "app 2.0.0-rc.1",
                "app 1.10.0",
                "app 1.9.0",
                "app 1.2.0"
            ]
        );
        assert_eq!(l.versions(Some("aaa")).unwrap().len(), 1);
        assert!(l.versions(Some("nope")).unwrap().is_empty());
    }
}

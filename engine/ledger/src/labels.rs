//! The labels each client reports of itself (`client_labels`): written in
//! the fleet's group commit ([`crate::FleetBatch::labels`]), read by stage
//! membership and `haifu rollback --label`.
//!
//! The master checks a report with `haifu_core::check_labels` before it
//! reaches a batch; reading back, a stored row that fails the same check
//! (a hand-edited file) is an error rather than a label.

use std::collections::BTreeMap;

use haifu_core::Labels;
use rusqlite::{Transaction, params};

use crate::{Ledger, LedgerError};

/// A client's whole set of labels, as it reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelReport {
    /// The client.
    pub client: String,
    /// Its labels (empty: it has none now).
    pub labels: Labels,
}

/// Replaces each reporting client's labels, inside the batch's
/// transaction.
pub(crate) fn apply(tx: &Transaction<'_>, reports: &[LabelReport]) -> rusqlite::Result<()> {
    let mut clear = tx.prepare_cached("DELETE FROM client_labels WHERE client = ?1")?;
    let mut insert =
        tx.prepare_cached("INSERT INTO client_labels (client, key, value) VALUES (?1, ?2, ?3)")?;
    for r in reports {
        clear.execute(params![r.client])?;
        for (k, v) in &r.labels {
            insert.execute(params![r.client, k, v])?;
        }
    }
    Ok(())
}

impl Ledger {
    /// Every client's labels, by client (clients without any are absent).
    pub fn client_labels(&self) -> Result<BTreeMap<String, Labels>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT client, key, value FROM client_labels ORDER BY client, key")
            .map_err(&wrap)?;
        let rows: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|r| r.collect())
            .map_err(&wrap)?;
        let mut out: BTreeMap<String, Labels> = BTreeMap::new();
        for (client, key, value) in rows {
            haifu_core::check_label_key(&key)
                .and_then(|()| haifu_core::check_label_value(&value))
                .map_err(|e| LedgerError::Damaged {
                    path: self.path.clone(),
                    detail: format!("client_labels of {client:?}: {e}"),
                })?;
            out.entry(client).or_default().insert(key, value);
        }
        Ok(out)
    }

    /// The clients whose labels hold `key: value`, sorted.
    pub fn clients_labelled(&self, key: &str, value: &str) -> Result<Vec<String>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT client FROM client_labels WHERE key = ?1 AND value = ?2 ORDER BY client",
            )
            .map_err(&wrap)?;
        stmt.query_map(params![key, value], |r| r.get(0))
            .and_then(|r| r.collect())
            .map_err(&wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FleetBatch;

    fn report(client: &str, pairs: &[(&str, &str)]) -> LabelReport {
        LabelReport {
            client: client.into(),
            labels: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_report_replaces_the_clients_whole_set() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        let batch = FleetBatch {
            labels: vec![
                report("c1", &[("ring", "canary"), ("site", "s1")]),
                report("c2", &[("ring", "canary")]),
                report("c3", &[("ring", "stable")]),
            ],
            ..FleetBatch::default()
        };
        l.apply_fleet(&batch).unwrap();
        assert_eq!(l.clients_labelled("ring", "canary").unwrap(), ["c1", "c2"]);
        let again = FleetBatch {
            labels: vec![report("c1", &[("site", "s1")]), report("c2", &[])],
            ..FleetBatch::default()
        };
        l.apply_fleet(&again).unwrap();
        assert!(l.clients_labelled("ring", "canary").unwrap().is_empty());
        let all = l.client_labels().unwrap();
        assert_eq!(all.len(), 2, "c2 has none now: {all:?}");
        assert_eq!(all["c1"]["site"], "s1");
    }

    /// A ledger written before labels existed (schema 8, with clients)
    /// opens, migrates, keeps its clients, and has no labels for them.
    #[test]
    fn an_old_ledger_file_migrates_and_keeps_its_clients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        let c = rusqlite::Connection::open(&path).unwrap();
        for sql in &crate::MIGRATIONS[..8] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 8).unwrap();
        c.execute(
            "INSERT INTO clients (id, relay, last_contact) VALUES ('pos-1', 'r1', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
        drop(c);
        let mut l = Ledger::open(&path).unwrap();
        assert_eq!(l.schema_version().unwrap(), crate::SCHEMA_VERSION);
        assert_eq!(l.clients().unwrap().len(), 1);
        assert!(l.client_labels().unwrap().is_empty());
        l.apply_fleet(&FleetBatch {
            labels: vec![report("pos-1", &[("ring", "canary")])],
            ..FleetBatch::default()
        })
        .unwrap();
        assert_eq!(l.clients_labelled("ring", "canary").unwrap(), ["pos-1"]);
    }
}

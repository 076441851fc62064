//! The schema, as an ordered list of migrations.
//!
//! `PRAGMA user_version` records how many have been applied. Each migration
//! runs in its own transaction together with the bump of `user_version`, so a
//! crash leaves the file at one version or the next, never between. Never
//! edit a migration that has shipped: append a new one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::LedgerError;

/// Every migration, in order. Index `i` takes the schema from version `i` to
/// `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: artifacts, their versions with signed manifests, and the event log.
    "CREATE TABLE artifacts (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE versions (
        id           INTEGER PRIMARY KEY,
        artifact_id  INTEGER NOT NULL REFERENCES artifacts(id),
        version      TEXT NOT NULL,
        sha3_256     TEXT NOT NULL CHECK (length(sha3_256) = 64),
        size         INTEGER NOT NULL CHECK (size >= 0),
        stored_size  INTEGER NOT NULL CHECK (stored_size >= 0),
        created_at   TEXT NOT NULL,
        manifest     TEXT NOT NULL,
        UNIQUE (artifact_id, version)
    );
    CREATE INDEX versions_by_digest ON versions (sha3_256);
    CREATE TABLE events (
        id       INTEGER PRIMARY KEY,
        at       TEXT NOT NULL,
        kind     TEXT NOT NULL,
        subject  TEXT NOT NULL,
        detail   TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_by_subject ON events (subject, id);",
    // 2: runs and their clients, the fleet, and the services the gate knows.
    "CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        workflow    TEXT NOT NULL,
        name        TEXT NOT NULL,
        artifact    TEXT NOT NULL,
        version     TEXT NOT NULL,
        fleet       TEXT NOT NULL,
        state       TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
        next_wake   TEXT,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE TABLE run_clients (
        run_id        INTEGER NOT NULL REFERENCES runs(id),
        client        TEXT NOT NULL,
        relay         TEXT NOT NULL,
        state         TEXT NOT NULL CHECK (state IN
                        ('pending', 'delivered', 'delta', 'undelivered', 'disconnected')),
        round         INTEGER,
        completed_at  TEXT,
        reason        TEXT,
        PRIMARY KEY (run_id, client)
    ) WITHOUT ROWID;
    CREATE INDEX run_clients_by_state ON run_clients (run_id, state);
    CREATE TABLE clients (
        id             TEXT PRIMARY KEY,
        relay          TEXT,
        artifact       TEXT,
        version        TEXT,
        last_contact   TEXT,
        denied_reason  TEXT,
        denied_at      TEXT
    ) WITHOUT ROWID;
    CREATE TABLE services (
        name      TEXT PRIMARY KEY,
        artifact  TEXT NOT NULL,
        since     TEXT NOT NULL
    ) WITHOUT ROWID;",
    // 3: a client can already have a run's version when it reports in
    // ('current'); SQLite cannot change a CHECK, so the table is rebuilt.
    "CREATE TABLE run_clients_v3 (
        run_id        INTEGER NOT NULL REFERENCES runs(id),
        client        TEXT NOT NULL,
        relay         TEXT NOT NULL,
        state         TEXT NOT NULL CHECK (state IN
                        ('pending', 'delivered', 'delta', 'current', 'undelivered', 'disconnected')),
        round         INTEGER,
        completed_at  TEXT,
        reason        TEXT,
        PRIMARY KEY (run_id, client)
    ) WITHOUT ROWID;
    INSERT INTO run_clients_v3 SELECT run_id, client, relay, state, round, completed_at, reason FROM run_clients;
    DROP TABLE run_clients;
    ALTER TABLE run_clients_v3 RENAME TO run_clients;
    CREATE INDEX run_clients_by_state ON run_clients (run_id, state);",
    // 4: the bytes a run cost on the wire: each relay's rounds (multicast),
    // each relay's fetch of the artifact, each straggler's delta or full copy.
    "CREATE TABLE run_traffic (
        id       INTEGER PRIMARY KEY,
        run_id   INTEGER NOT NULL REFERENCES runs(id),
        peer     TEXT NOT NULL,
        kind     TEXT NOT NULL CHECK (kind IN ('multicast', 'fetch', 'delta', 'full')),
        round    INTEGER,
        bytes    INTEGER NOT NULL CHECK (bytes >= 0),
        at       TEXT NOT NULL
    );
    CREATE INDEX run_traffic_by_run ON run_traffic (run_id, kind);",
    // 5: the HTTP API's bearer tokens, stored as the sha3-256 of the token
    // (never the token). A revoked token's row is deleted; the events log
    // keeps who created and revoked what.
    "CREATE TABLE api_tokens (
        name          TEXT PRIMARY KEY,
        scope         TEXT NOT NULL CHECK (scope IN ('read', 'admin')),
        sha3_256      BLOB NOT NULL UNIQUE CHECK (length(sha3_256) = 32),
        created_at    TEXT NOT NULL,
        last_used_at  TEXT
    ) WITHOUT ROWID;",
    // 6: a delta made by the bsdiff method is its own traffic kind, so the
    // audit shows which method served the stragglers. SQLite cannot change
    // a CHECK in place: the table is rebuilt with its rows.
    "CREATE TABLE run_traffic_6 (
        id       INTEGER PRIMARY KEY,
        run_id   INTEGER NOT NULL REFERENCES runs(id),
        peer     TEXT NOT NULL,
        kind     TEXT NOT NULL
                 CHECK (kind IN ('multicast', 'fetch', 'delta', 'delta-bsdiff', 'full')),
        round    INTEGER,
        bytes    INTEGER NOT NULL CHECK (bytes >= 0),
        at       TEXT NOT NULL
    );
    INSERT INTO run_traffic_6 (id, run_id, peer, kind, round, bytes, at)
        SELECT id, run_id, peer, kind, round, bytes, at FROM run_traffic;
    DROP TABLE run_traffic;
    ALTER TABLE run_traffic_6 RENAME TO run_traffic;
    CREATE INDEX run_traffic_by_run ON run_traffic (run_id, kind);",
    // 7: a completion (or a report of already having the version) recorded
    // after its run finished is kept beside the run's final record, never
    // in it: the run's audit stays what it was when the run ended, plus
    // these marked late records.
    "ALTER TABLE run_clients ADD COLUMN late_state TEXT
         CHECK (late_state IN ('delivered', 'delta', 'current'));
    ALTER TABLE run_clients ADD COLUMN late_round INTEGER;
    ALTER TABLE run_clients ADD COLUMN late_at TEXT;",
    // 8: rollback orders (`haifu rollback`) and what each client did with
    // its order: the one way a client's version moves back, recorded and
    // audited as such.
    "CREATE TABLE rollbacks (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        client        TEXT NOT NULL,
        relay         TEXT,
        artifact      TEXT NOT NULL,
        from_version  TEXT,
        to_version    TEXT,
        by            TEXT NOT NULL,
        through_run   INTEGER NOT NULL,
        ordered_at    TEXT NOT NULL,
        state         TEXT NOT NULL CHECK (state IN ('ordered', 'done', 'refused')),
        version       TEXT,
        reason        TEXT,
        finished_at   TEXT
    );
    CREATE INDEX rollbacks_by_state ON rollbacks (state, id);
    CREATE INDEX rollbacks_by_client ON rollbacks (client, id);",
    // 9: the labels each client reports of itself (its config's `labels:`),
    // one row per pair, so that a stage or `haifu rollback --label` finds
    // the clients of a pair by the index. A client's report replaces its
    // whole set; a client that never reported any has no rows.
    "CREATE TABLE client_labels (
        client  TEXT NOT NULL,
        key     TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (client, key)
    );
    CREATE INDEX client_labels_by_pair ON client_labels (key, value, client);",
    // 10: an operator's pause of a running run (`haifu run pause`): who,
    // when and why, cleared by `haifu run resume`. A column, not a status:
    // a paused run is still running (its deltas, completions and late
    // records go on), it only starts nothing new; the CHECK on `status`
    // stays as it is. Each order is also an event, so the audit keeps the
    // history after the columns are cleared.
    "ALTER TABLE runs ADD COLUMN paused_at TEXT;
    ALTER TABLE runs ADD COLUMN paused_by TEXT;
    ALTER TABLE runs ADD COLUMN paused_reason TEXT;",
    // 11: phased rollouts. A client's stage within its run (NULL: the run
    // has no stages, or the client joined and is not placed yet), and a
    // failure after install ('failed': the post-install command or the
    // health command failed, or the client rolled back on its own), which
    // counts against the stage's gate. The failure's detail is in
    // `reason`; `round` and `completed_at` stay as they were when a
    // delivered client fails later. SQLite cannot change a CHECK, so the
    // table is rebuilt.
    "CREATE TABLE run_clients_v11 (
        run_id        INTEGER NOT NULL REFERENCES runs(id),
        client        TEXT NOT NULL,
        relay         TEXT NOT NULL,
        state         TEXT NOT NULL CHECK (state IN
                        ('pending', 'delivered', 'delta', 'current', 'undelivered', 'disconnected', 'failed')),
        round         INTEGER,
        completed_at  TEXT,
        reason        TEXT,
        late_state    TEXT CHECK (late_state IN ('delivered', 'delta', 'current')),
        late_round    INTEGER,
        late_at       TEXT,
        stage         INTEGER CHECK (stage >= 0),
        failure       TEXT CHECK (failure IN ('post-install', 'health', 'rolled-back')),
        failed_at     TEXT,
        CHECK ((state = 'failed') = (failure IS NOT NULL)),
        PRIMARY KEY (run_id, client)
    ) WITHOUT ROWID;
    INSERT INTO run_clients_v11 (run_id, client, relay, state, round, completed_at, reason, late_state, late_round, late_at)
        SELECT run_id, client, relay, state, round, completed_at, reason, late_state, late_round, late_at FROM run_clients;
    DROP TABLE run_clients;
    ALTER TABLE run_clients_v11 RENAME TO run_clients;
    CREATE INDEX run_clients_by_state ON run_clients (run_id, state);
    CREATE INDEX run_clients_by_stage ON run_clients (run_id, stage, state);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), LedgerError> {
    let wrap = LedgerError::sqlite(path);
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&wrap)?;
        // Read inside the write lock: two processes opening a new file at
        // once apply each migration exactly once.
        let current = user_version(&tx).map_err(&wrap)?;
        if current > SCHEMA_VERSION {
            return Err(LedgerError::TooNew {
                path: path.to_owned(),
                found: current,
                known: SCHEMA_VERSION,
            });
        }
        let Some(sql) = MIGRATIONS.get(current as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql).map_err(&wrap)?;
        tx.pragma_update(None, "user_version", current + 1)
            .map_err(&wrap)?;
        tx.commit().map_err(&wrap)?;
        tracing::info!(path = %path.display(), version = current + 1, "ledger schema migrated");
    }
}

//! The HTTP API's bearer tokens.
//!
//! What it does: keeps, per token, a name, a scope and the sha3-256 of the
//! token text, never the token itself: a copy of the ledger does not let
//! anyone call the API. Creating and revoking are written to the event log.
//!
//! What it does not do: make tokens, hash them or compare them. The API's
//! auth module does (it owns the random source and the constant-time
//! comparison); this module stores what it is given.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::{Ledger, LedgerError, now_text};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Every read-only endpoint: runs, audits, the fleet, the gate.
    Read,
    /// Everything `read` may, and the write endpoints: operators' orders
    /// on a run (`POST /v1/runs/{id}/pause|resume|abort`).
    Admin,
}

impl TokenScope {
    /// Whether a token of this scope may call an endpoint needing `needed`:
    /// `admin` passes everything, `read` only `read`.
    pub fn allows(self, needed: TokenScope) -> bool {
        match self {
            Self::Admin => true,
            Self::Read => needed == Self::Read,
        }
    }

    /// The name stored and shown: `read` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is neither `read` nor `admin`.
#[derive(Debug, thiserror::Error)]
#[error("unknown token scope {0:?} (expected read or admin)")]
pub struct UnknownScope(pub String);

impl FromStr for TokenScope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Self::Read),
            "admin" => Ok(Self::Admin),
            other => Err(UnknownScope(other.to_owned())),
        }
    }
}

impl ToSql for TokenScope {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for TokenScope {
    // An unknown value is an error, never a default: a damaged row must not
    // turn into a token with some scope.
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// A token as listed: everything but its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRow {
    /// The operator's name for it, unique.
    pub name: String,
    /// What it may do.
    pub scope: TokenScope,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// When it last opened a request, to the minute (the API writes it at
    /// most once a minute per token); `None` if never.
    pub last_used_at: Option<String>,
}

/// A token as the API checks it: its name, scope and sha3-256.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest {
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub scope: TokenScope,
    /// sha3-256 of the token text.
    pub sha3_256: [u8; 32],
}

impl fmt::Debug for TokenDigest {
    // The hash is no secret, but it has no place in logs either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenDigest")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Records a new token under `name`. `None` if a token of that name
    /// exists (revoke it first); the existing one is left alone.
    pub fn create_token(
        &mut self,
        name: &str,
        scope: TokenScope,
        sha3_256: &[u8; 32],
    ) -> Result<Option<TokenRow>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let at = now_text();
        let tx = self.conn.transaction().map_err(&wrap)?;
        let n = tx
            .execute(
                "INSERT INTO api_tokens (name, scope, sha3_256, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![name, scope, &sha3_256[..], at],
            )
            .map_err(&wrap)?;
        if n == 0 {
            return Ok(None);
        }
        insert_event(
            &tx,
            &at,
            "api_token_created",
            &format!("api-token:{name}"),
            &serde_json::json!({ "scope": scope }).to_string(),
        )
        .map_err(&wrap)?;
        tx.commit().map_err(&wrap)?;
        Ok(Some(TokenRow {
            name: name.to_owned(),
            scope,
            created_at: at,
            last_used_at: None,
        }))
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, scope, created_at, last_used_at FROM api_tokens ORDER BY name",
            )
            .map_err(&wrap)?;
        stmt.query_map([], |r| {
            Ok(TokenRow {
                name: r.get(0)?,
                scope: r.get(1)?,
                created_at: r.get(2)?,
                last_used_at: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(&wrap)
    }

    /// Every token's hash, for the API to compare against.
    pub fn token_digests(&self) -> Result<Vec<TokenDigest>, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, scope, sha3_256 FROM api_tokens ORDER BY name")
            .map_err(&wrap)?;
        let rows: Vec<(String, TokenScope, Vec<u8>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(&wrap)?;
        rows.into_iter()
            .map(|(name, scope, hash)| {
                let sha3_256 =
                    <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| LedgerError::Damaged {
                        path: self.path.clone(),
                        detail: format!("api token {name:?} has a hash of {} bytes", hash.len()),
                    })?;
                Ok(TokenDigest {
                    name,
                    scope,
                    sha3_256,
                })
            })
            .collect()
    }

    /// Whether any token exists (a master refuses a non-loopback API
    /// without one).
    pub fn has_tokens(&self) -> Result<bool, LedgerError> {
        self.conn
            .query_row("SELECT 1 FROM api_tokens LIMIT 1", [], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(LedgerError::sqlite(&self.path))
    }

    /// Deletes the token `name`; `false` if there was none. A request
    /// presenting it afterwards is refused.
    pub fn revoke_token(&mut self, name: &str) -> Result<bool, LedgerError> {
        let wrap = LedgerError::sqlite(&self.path);
        let tx = self.conn.transaction().map_err(&wrap)?;
        let n = tx
            .execute("DELETE FROM api_tokens WHERE name = ?1", params![name])
            .map_err(&wrap)?;
        if n > 0 {
            insert_event(
                &tx,
                &now_text(),
                "api_token_revoked",
                &format!("api-token:{name}"),
                "{}",
            )
            .map_err(&wrap)?;
        }
        tx.commit().map_err(&wrap)?;
        Ok(n > 0)
    }

    /// Notes that token `name` was used at `at` (RFC 3339).
    pub fn token_used(&self, name: &str, at: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE name = ?1",
                params![name, at],
            )
            .map(|_| ())
            .map_err(LedgerError::sqlite(&self.path))
    }
}

// runs.rs has its own; this one keeps the token module self-contained.
fn insert_event(
    tx: &rusqlite::Connection,
    at: &str,
    kind: &str,
    subject: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO events (at, kind, subject, detail) VALUES (?1, ?2, ?3, ?4)",
        params![at, kind, subject, detail],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_created_listed_and_revoked_by_name() {
        let d = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&d.path().join("l.sqlite")).unwrap();
        assert!(!l.has_tokens().unwrap());
        let row = l
            .create_token("dash", TokenScope::Read, &[7; 32])
            .unwrap()
            .unwrap();
        assert_eq!(row.scope, TokenScope::Read);
        // The same name again is refused and changes nothing.
        assert!(
            l.create_token("dash", TokenScope::Admin, &[8; 32])
                .unwrap()
                .is_none()
        );
        l.create_token("ops", TokenScope::Admin, &[9; 32])
            .unwrap()
            .unwrap();
        assert!(l.has_tokens().unwrap());
        let names: Vec<_> = l.tokens().unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["dash", "ops"]);
        let d0 = &l.token_digests().unwrap()[0];
        assert_eq!((d0.scope, d0.sha3_256), (TokenScope::Read, [7; 32]));

        l.token_used("dash", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            l.tokens().unwrap()[0].last_used_at.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert!(l.revoke_token("dash").unwrap());
        assert!(!l.revoke_token("dash").unwrap());
        assert_eq!(l.token_digests().unwrap().len(), 1);
    }

    #[test]
    fn admin_passes_everything_read_only_read() {
        assert!(TokenScope::Admin.allows(TokenScope::Read));
        assert!(TokenScope::Admin.allows(TokenScope::Admin));
        assert!(TokenScope::Read.allows(TokenScope::Read));
        assert!(!TokenScope::Read.allows(TokenScope::Admin));
        assert!("write".parse::<TokenScope>().is_err());
    }
}

//! Bearer tokens: making them, and checking the one a request presents.
//!
//! A token is `hfu_` and 64 lowercase hex digits: 32 bytes from the OS
//! random source. The ledger keeps only its sha3-256, so a copy of the
//! ledger (or a backup) does not let anyone call the API. No salt and no
//! slow hash: 256 random bits cannot be guessed from their hash, unlike a
//! password.
//!
//! Checking a request: the header must be `Authorization: Bearer <token>`
//! with a token of that shape (anything else is refused before any I/O);
//! its hash is compared with every stored hash in constant time, all of them
//! every time, so timing tells nothing about which stored hash came close.
//!
//! Scopes: `read` passes every read-only endpoint; `admin` passes
//! everything `read` does and the write endpoints (operators' orders on a
//! run), which no other scope passes ([`TokenScope::allows`]). The token's
//! name goes with the request to the endpoint (as its caller), so an order
//! is recorded in its name.
//!
//! What it does not do: rate-limit or lock out (the connection cap and the
//! timeouts bound what a caller can hold), or expire tokens (revoke them).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use haifu_ledger::{Ledger, LedgerError, TokenScope};
use sha3::{Digest, Sha3_256};
use subtle::ConstantTimeEq;

use super::Api;
use super::routes::{error, internal};

/// What every token starts with: says what it is when it turns up in a
/// file or a paste, and lets secret scanners find it.
pub const TOKEN_PREFIX: &str = "hfu_";

/// How often a token's `last_used_at` is written at most: a write per
/// request would put an fsync behind every dashboard refresh.
const USE_RECORD_EVERY: Duration = Duration::from_secs(60);

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The OS random source failed.
    #[error("the OS random source failed: {0}")]
    Random(getrandom::Error),
}

/// A freshly made token: the text to hand to the operator once, and the
/// hash to store.
#[derive(Clone)]
pub struct NewToken {
    /// `hfu_…`, shown once, never stored.
    pub text: String,
    /// Its sha3-256, what the ledger keeps.
    pub sha3_256: [u8; 32],
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewToken(…)")
    }
}

/// Makes a token from 32 bytes of the OS random source.
pub fn new_token() -> Result<NewToken, TokenError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(TokenError::Random)?;
    let text = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let sha3_256 = digest(&text);
    Ok(NewToken { text, sha3_256 })
}

/// sha3-256 of a token's text.
pub fn digest(token: &str) -> [u8; 32] {
    Sha3_256::digest(token.as_bytes()).into()
}

/// Whether `t` has the shape of a token (`hfu_` + 64 lowercase hex).
fn well_formed(t: &str) -> bool {
    t.strip_prefix(TOKEN_PREFIX)
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The token of an `Authorization` header value, if it is `Bearer <token>`
/// (the scheme in any case, RFC 9110).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches(' '))
}

/// The ledger's tokens as the API sees them: one long-lived connection for
/// the lookups, one for the occasional `last_used_at`.
pub(super) struct Tokens {
    ledger: PathBuf,
    reader: Mutex<Option<Ledger>>,
    writer: Mutex<Option<Ledger>>,
    recorded: Mutex<HashMap<String, Instant>>,
}

impl Tokens {
    pub(super) fn new(ledger: PathBuf) -> Self {
        Self {
            ledger,
            reader: Mutex::new(None),
            writer: Mutex::new(None),
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// The name and scope of the token hashing to `hash`, if any. Blocking.
    fn find(&self, hash: &[u8; 32]) -> Result<Option<(String, TokenScope)>, LedgerError> {
        let mut slot = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let ledger = match slot.as_mut() {
            Some(l) => l,
            None => slot.insert(Ledger::open(&self.ledger)?),
        };
        let digests = match ledger.token_digests() {
            Ok(d) => d,
            Err(e) => {
                // Reopen next time rather than keep a broken connection.
                *slot = None;
                return Err(e);
            }
        };
        let mut found = None;
        for d in digests {
            // No early exit: every stored hash is compared every time.
            if bool::from(d.sha3_256.ct_eq(hash)) {
                found = Some((d.name, d.scope));
            }
        }
        Ok(found)
    }

    /// Whether `name`'s use is to be written now (not in the last minute);
    /// if so, counts it as written. A map lookup: fine on the async side.
    fn use_due(&self, name: &str) -> bool {
        let mut seen = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if seen
            .get(name)
            .is_some_and(|t| now.duration_since(*t) < USE_RECORD_EVERY)
        {
            return false;
        }
        seen.insert(name.to_owned(), now);
        true
    }

    /// Writes `last_used_at` for `name`. Best effort and blocking: while the
    /// writer is busy the use is skipped rather than queued.
    fn record_use(&self, name: &str) {
        let Ok(mut slot) = self.writer.try_lock() else {
            return;
        };
        let opened = match slot.as_mut() {
            Some(l) => Ok(l),
            None => Ledger::open(&self.ledger).map(|l| slot.insert(l)),
        };
        let at = jiff::Timestamp::now().to_string();
        if let Err(e) = opened.and_then(|l| l.token_used(name, &at)) {
            tracing::debug!(token = name, "api: last use not recorded: {e}");
            *slot = None;
        }
    }
}

/// 401 with the challenge RFC 6750 asks for.
fn unauthorized(msg: &str, bad_token: bool) -> Response {
    let challenge = if bad_token {
        r#"Bearer realm="haifu", error="invalid_token""#
    } else {
        r#"Bearer realm="haifu""#
    };
    let mut r = error(StatusCode::UNAUTHORIZED, msg).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

/// The name of the token a request was let through with.
#[derive(Debug, Clone)]
pub(super) struct Caller(String);

impl Caller {
    /// Who the audit says gave an order: `api:NAME`.
    pub(super) fn by(&self) -> String {
        format!("api:{}", self.0)
    }
}

/// Lets the request through if it carries a token of scope `read` or more.
pub(super) async fn require_read(State(api): State<Api>, req: Request, next: Next) -> Response {
    require(&api, TokenScope::Read, req, next).await
}

/// Lets the request through if it carries a token of scope `admin`.
pub(super) async fn require_admin(State(api): State<Api>, req: Request, next: Next) -> Response {
    require(&api, TokenScope::Admin, req, next).await
}

async fn require(api: &Api, needed: TokenScope, mut req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return unauthorized(
            "missing bearer token: send `Authorization: Bearer hfu_…` \
             (create one with `haifu api token create`)",
            false,
        );
    };
    let Some(token) = bearer(value).filter(|t| well_formed(t)) else {
        return unauthorized("invalid or revoked token", true);
    };
    let hash = digest(token);
    let tokens = Arc::clone(&api.tokens);
    let found = tokio::task::spawn_blocking(move || tokens.find(&hash)).await;
    let (name, scope) = match found {
        Ok(Ok(Some(t))) => t,
        Ok(Ok(None)) => return unauthorized("invalid or revoked token", true),
        Ok(Err(e)) => {
            tracing::warn!("api: cannot read the tokens: {e}");
            return internal(e).into_response();
        }
        Err(e) => return internal(e).into_response(),
    };
    if !scope.allows(needed) {
        return error(
            StatusCode::FORBIDDEN,
            format!("token {name:?} has scope {scope}; this endpoint needs {needed}"),
        )
        .into_response();
    }
    req.extensions_mut().insert(Caller(name.clone()));
    if api.tokens.use_due(&name) {
        let tokens = Arc::clone(&api.tokens);
        // Not awaited: the answer does not wait for the bookkeeping.
        drop(tokio::task::spawn_blocking(move || {
            tokens.record_use(&name)
        }));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_are_well_formed_distinct_and_hash_to_what_is_stored() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert!(well_formed(&a.text), "{}", a.text);
        assert_ne!(a.text, b.text);
        assert_eq!(digest(&a.text), a.sha3_256);
        assert!(!format!("{a:?}").contains(&a.text[4..]), "never in logs");
    }

    #[test]
    fn only_bearer_tokens_of_the_right_shape_are_looked_up() {
        let t = format!("hfu_{}", "ab".repeat(32));
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer(&h(&format!("Bearer {t}"))), Some(t.as_str()));
        assert_eq!(bearer(&h(&format!("bearer  {t}"))), Some(t.as_str()));
        assert_eq!(bearer(&h(&format!("Basic {t}"))), None);
        assert_eq!(bearer(&h(&t)), None);
        assert!(well_formed(&t));
        for bad in [
            "hfu_",
            "ab".repeat(34).as_str(),
            &format!("hfu_{}", "AB".repeat(32)),
            &format!("hfu_{}", "ab".repeat(33)),
            &format!("hfu_{}g", "a".repeat(63)),
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}

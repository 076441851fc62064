//! Who an operator's order is given by (`--by`), for the audit: one rule
//! for `haifu rollback` and `haifu run pause|resume|abort`.

use anyhow::{Result, bail};

/// The longest `--by` kept (the ledger's own bound).
const MAX_BY_LEN: usize = haifu_ledger::MAX_WHO;

/// `--by`, else `$USER`, else "operator"; refused if empty, too long or
/// with control characters.
pub(crate) fn who(by: Option<String>) -> Result<String> {
    let by = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".to_owned());
    if by.is_empty() || by.len() > MAX_BY_LEN || by.chars().any(char::is_control) {
        bail!("--by {by:?}: must be 1 to {MAX_BY_LEN} printable characters");
    }
    Ok(by)
}

/// `--reason`, refused if too long or with control characters other
/// than none (it is shown on one line).
pub(crate) fn reason(reason: Option<String>) -> Result<Option<String>> {
    let max = haifu_ledger::MAX_REASON;
    match reason {
        Some(r) if !haifu_ledger::printable_reason(&r) => {
            bail!("--reason: must be at most {max} bytes on one line, without control characters")
        }
        other => Ok(other),
    }
}

//! The daemons' YAML configuration files.
//!
//! Every file is read whole, unknown keys are refused (a typo must not
//! silently fall back to a default), and every error names the file, line
//! and column. Relative paths in a file are taken from the file's folder, so
//! a config works from any working directory.
//!
//! The same types give the JSON Schemas editors use ([`schema`], printed by
//! `haifu schema master|relay|client`): the keys, their types, defaults and
//! documentation come from the derives below, and the bounds [`Resolve::check`]
//! holds values to are the constants both read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

mod client;
mod master;
mod place;
mod relay;
mod shared;
#[cfg(test)]
mod tests;

pub use client::{ClientConfig, ClientMulticast, HealthConfig, PostInstallConfig, Testing};
pub use master::{ApiLimits, MasterConfig};
pub use relay::{RelayConfig, RelayMulticast};
pub use shared::{PeerAddr, Scalar, TlsFiles, TransportsConfig};

/// Why a config file cannot be used: one line naming the file and place.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (missing, not a regular file, over the cap).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text has a shape the reader refuses before parsing (aliases,
    /// too deep).
    #[error("{}:{source}", path.display())]
    Shape {
        /// The config file.
        path: PathBuf,
        /// What and where (`LINE:COLUMN: …`).
        #[source]
        source: haifu_spec::ShapeError,
    },
    /// Not YAML, or a key or type the config does not have.
    #[error("{at}: {message}")]
    Syntax {
        /// `FILE:LINE:COLUMN`, or the file alone when the parser gives no
        /// place.
        at: String,
        /// The parser's message without its own ` at line L column C`.
        message: String,
        /// The parser's error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A value serde accepted but [`Resolve::check`] refused.
    #[error("{at}: {source}")]
    Invalid {
        /// `FILE:LINE:COLUMN` of the value, or the file alone for a default.
        at: String,
        /// What is wrong with it.
        #[source]
        source: Invalid,
    },
}

/// A value a config check refuses. The message starts with the dotted key
/// it is about (`multicast.group 10.0.0.1:7500 is not …`), so [`load`] can
/// name the line and column of its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// The JSON Schema of config type `T` (`MasterConfig`, `RelayConfig`,
/// `ClientConfig`), titled `title`: what `haifu schema` prints and
/// `examples/schemas/` holds. It says what serde reads (keys, types,
/// defaults, unknown keys refused) and the bounds [`Resolve::check`] holds
/// numbers to; names, artifact names and multicast groups are only checked
/// when the file is loaded.
pub fn schema<T: JsonSchema>(title: &str) -> serde_json::Value {
    let mut schema = schemars::schema_for!(T);
    schema.insert("title".into(), title.into());
    schema.to_value()
}

/// The largest daemon config read, in bytes: a config is a few hundred
/// bytes, and the cap keeps a wrong path from being read whole.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads and checks a config file of type `T`.
pub fn load<T: for<'de> Deserialize<'de> + Resolve>(path: &Path) -> Result<T, ConfigError> {
    let text = haifu_policy::input::read_text(path, MAX_CONFIG_BYTES, "daemon configs").map_err(
        |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        },
    )?;
    // serde_yaml expands aliases as it goes (a 1 MB file of nested aliases
    // took 3.9 GB); the workflow reader's shape check refuses them first.
    haifu_spec::check_shape(&text).map_err(|source| ConfigError::Shape {
        path: path.to_owned(),
        source,
    })?;
    let mut value: T = serde_yaml::from_str(&text).map_err(|source| {
        let at = source
            .location()
            .map(|l| format!("{}:{}:{}", path.display(), l.line(), l.column()))
            .unwrap_or_else(|| path.display().to_string());
        // serde_yaml appends " at line L column C"; the prefix says it.
        let msg = source.to_string();
        let message = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        ConfigError::Syntax {
            at,
            message,
            source,
        }
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    value.resolve(base);
    value.check().map_err(|source| {
        let at = match place::find(&text, place::key_of(&source.0)) {
            Some(pos) => format!("{}:{pos}", path.display()),
            None => path.display().to_string(),
        };
        ConfigError::Invalid { at, source }
    })?;
    Ok(value)
}

/// Makes relative paths relative to the config file, then checks values.
pub trait Resolve {
    /// Joins every relative path onto `base`.
    fn resolve(&mut self, base: &Path);
    /// Checks values serde cannot; see [`Invalid`] for how a refusal
    /// reads.
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

fn fix(p: &mut PathBuf, base: &Path) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

/// `metrics:` off loopback only with `metrics_public: true`, and
/// `metrics_public` only with a `metrics:` address.
fn check_metrics(addr: Option<SocketAddr>, public: bool, hint: &str) -> Result<(), Invalid> {
    match addr {
        Some(a) if !public && !crate::http::is_loopback(a) => Err(Invalid(format!(
            "metrics: {a} is not a loopback address, and metrics name relays, clients and \
             versions to anyone who connects; set `metrics_public: true` beside it to serve them \
             there (a trusted segment, or behind a proxy), or listen on 127.0.0.1{hint}"
        ))),
        None if public => Err(Invalid(
            "metrics_public: true without a `metrics:` address; add the address or drop it".into(),
        )),
        _ => Ok(()),
    }
}

fn check_name(key: &str, v: &str) -> Result<(), Invalid> {
    haifu_plugin_host::pki::validate_name(v).map_err(|e| Invalid(format!("{key} {v:?}: {e}")))
}

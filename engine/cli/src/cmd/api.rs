//! `haifu api`: the bearer tokens of the master's HTTP API.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use haifu_ledger::TokenScope;

use crate::home::Home;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Bearer tokens for the HTTP API: every endpoint but /healthz needs
    /// one, sent as `Authorization: Bearer hfu_…`.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a token and print it, once, on stdout. Only its sha3-256 is
    /// kept in the ledger: store the token now, it cannot be shown again.
    /// A running master accepts it at once.
    #[command(after_help = "Example:\n  \
        TOKEN=$(haifu api token create --name dashboard --scope read)\n  \
        curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:7480/v1/runs")]
    Create {
        /// A name to list and revoke it by: letters, digits, `.`, `_`, `-`.
        #[arg(long)]
        name: String,
        /// `read`: every read endpoint (runs, audits, the fleet, the
        /// gate, metrics). `admin`: everything `read` may, and operators'
        /// orders on a run (`POST /v1/runs/ID/pause|resume|abort`).
        #[arg(long, value_parser = parse_scope)]
        scope: TokenScope,
    },
    /// Every token: name, scope, created, last used (to the minute). Never
    /// the token itself.
    List {
        /// Print JSON: one object per token.
        #[arg(long)]
        json: bool,
    },
    /// Delete a token: a running master refuses it from its next request.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn parse_scope(s: &str) -> Result<TokenScope, String> {
    s.parse()
        .map_err(|e: haifu_ledger::UnknownScope| e.to_string())
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        bail!("token name {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'");
    }
    Ok(())
}

pub(crate) fn run(home: &Home, cmd: Command) -> Result<ExitCode> {
    let Command::Token(cmd) = cmd;
    match cmd {
        TokenCommand::Create { name, scope } => {
            check_name(&name)?;
            let token = haifu_fleet::api::auth::new_token()?;
            let created = home
                .ledger()?
                .create_token(&name, scope, &token.sha3_256)?
                .with_context(|| {
                    format!("a token named {name:?} exists; revoke it first or choose another name")
                })?;
            // The token alone on stdout, so `$(haifu api token create …)`
            // captures it; the rest on stderr.
            println!("{}", token.text);
            eprintln!(
                "token {:?} ({}) created; it is shown only now: store it",
                created.name, created.scope
            );
        }
        TokenCommand::List { json } => {
            let tokens = home.ledger_existing()?.tokens()?;
            if json {
                output::json(&tokens)?;
                return Ok(ExitCode::SUCCESS);
            }
            if tokens.is_empty() {
                eprintln!("no API token; create one with `haifu api token create`");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<24} {:<6} {:<32} LAST USED", "NAME", "SCOPE", "CREATED");
            for t in tokens {
                println!(
                    "{:<24} {:<6} {:<32} {}",
                    t.name,
                    t.scope.as_str(),
                    t.created_at,
                    t.last_used_at.as_deref().unwrap_or("never")
                );
            }
        }
        TokenCommand::Revoke { name } => {
            if !home.ledger_existing()?.revoke_token(&name)? {
                bail!("no API token named {name:?}");
            }
            println!("token {name:?} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

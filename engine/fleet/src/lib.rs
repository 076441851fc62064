//! haifu's fleet daemons: the master, its relays and their clients, over the
//! transport plugins (QUIC for control, multicast for the broadcast), both
//! loaded through `haifu-plugin-host`, never linked.
//!
//! What it does (steps 102-106 of the method): the master instructs its
//! relays ("artifact, date-time, version, rounds"); each relay fetches the
//! artifact once and broadcasts it to its clients in RaptorQ rounds at the
//! times the run decides; every client that decodes, verifies and installs
//! says so; the master makes each completion durable in its ledger before
//! acknowledging it, and the audit knows exactly who has what.
//!
//! What it does not do: decide anything. Run timing, retries and cut-offs
//! stay with the run driver and the policies (`haifu-runtime`); a
//! [`master::LiveFleet`] is the real fleet behind that driver.
#![forbid(unsafe_code)]

pub mod api;
pub mod broadcast;
pub mod client;
pub mod common;
pub mod config;
pub mod deltas;
pub mod link;
pub mod master;
pub mod relay;
mod trust;

pub use common::Shutdown;

/// Why a daemon could not start or a run could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Start-up failed (config, certificates, plugins, sockets).
    #[error("{0}")]
    Start(String),
    /// A run or a round failed.
    #[error("{0}")]
    Run(String),
}

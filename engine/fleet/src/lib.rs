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
//!
//! Each daemon is a core and a shell, as quinn-proto and quinn are: the
//! cores (`master::machine`, `relay::machine`, `client::machine`) take
//! events with the time and return effects, and own no socket, thread,
//! clock, file or database; the shells carry the effects out. The cores
//! are tested in memory, alone and together in a seeded simulation with
//! faults (`sim`, test builds only).
#![forbid(unsafe_code)]

pub mod api;
pub mod broadcast;
pub mod client;
pub mod common;
pub mod config;
pub mod deltas;
pub mod http;
pub mod link;
pub mod master;
pub mod metrics;
pub mod relay;
mod trust;

#[cfg(test)]
mod sim;

pub use common::Shutdown;

/// Why a daemon could not start, or a run, a round or an install failed.
/// Each variant names what was being done and keeps the error below it as
/// its source, so the CLI prints the whole chain on one line.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A file or folder the daemon needs is missing or unusable.
    #[error("{what}: {}", path.display())]
    File {
        /// What it is (`tls.cert`, `data folder`, ...).
        what: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// Why, when the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start the {name} thread")]
    Thread {
        /// The thread's job.
        name: &'static str,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
    /// Signal handling could not be set up.
    #[error("signal handling")]
    Signals(#[source] std::io::Error),
    /// The store, the master key or an atomic write failed.
    #[error("{what}")]
    Store {
        /// What was being done.
        what: &'static str,
        /// The store's error.
        #[source]
        source: haifu_store::StoreError,
    },
    /// The ledger failed.
    #[error("ledger")]
    Ledger(#[from] haifu_ledger::LedgerError),
    /// A plugin could not be loaded, or a transport call failed.
    #[error("{what}")]
    Transport {
        /// What was being done (`QUIC endpoint`, `multicast group`).
        what: &'static str,
        /// The plugin host's error.
        #[source]
        source: haifu_plugin_host::TransportError,
    },
    /// A plugin the daemon needs is absent or refused (the message names
    /// the file and the fault).
    #[error(transparent)]
    Plugin(Box<crate::common::PluginProblem>),
    /// The install root failed (open, stage, verify, install).
    #[error("{what}")]
    Install {
        /// What was being done.
        what: &'static str,
        /// The install crate's error.
        #[source]
        source: haifu_install::InstallError,
    },
    /// A broadcast round could not be sent or received.
    #[error("broadcast")]
    Broadcast(#[from] crate::broadcast::BroadcastError),
    /// A signed manifest's carousel session cannot be laid out.
    #[error("carousel session")]
    Session(#[from] haifu_runtime::session::SessionError),
    /// A signed manifest does not read.
    #[error("manifest")]
    Manifest(#[from] haifu_core::ManifestError),
    /// The pacer refused the rate.
    #[error("pacer")]
    Pacer(#[from] haifu_carousel::PacingError),
    /// A live run's workflow is invalid (the first problem, with its file
    /// and position).
    #[error(transparent)]
    Workflow(Box<haifu_spec::SpecError>),
    /// A live run's policies are invalid (the first problem, with its file
    /// and position).
    #[error(transparent)]
    Policy(Box<haifu_policy::PolicyError>),
    /// A load failed without naming a problem (a bug where it happens).
    #[error("{0} did not load, and no problem was named")]
    Unexplained(&'static str),
    /// A live run's workflow names a control transport this master does not
    /// speak: its deltas would never reach a client.
    #[error(
        "{at}: transports.unicast is {unicast:?} but this master's control transport is {control:?} (its config's transports.control)"
    )]
    ControlMismatch {
        /// The workflow file and position of `transports.unicast`.
        at: String,
        /// What the workflow says.
        unicast: String,
        /// What this master's config says.
        control: String,
    },
    /// A live run could not be driven.
    #[error("run {run}")]
    Run {
        /// The run.
        run: i64,
        /// The driver's error.
        #[source]
        source: haifu_runtime::driver::RunError,
    },
    /// A live run could not be created.
    #[error("creating the run")]
    CreateRun(#[source] haifu_runtime::driver::RunError),
    /// The HTTP API could not start.
    #[error("HTTP API")]
    Api(#[from] crate::api::StartError),
    /// The metrics listener could not start (its message names it).
    #[error(transparent)]
    Metrics(#[from] crate::http::ListenError),
    /// A record could not be encoded.
    #[error("encoding")]
    Json(#[from] serde_json::Error),
}

// Boxed: these errors are large, and every `Result<_, FleetError>` would
// carry their size.
impl From<crate::common::PluginProblem> for FleetError {
    fn from(p: crate::common::PluginProblem) -> Self {
        Self::Plugin(Box::new(p))
    }
}

impl FleetError {
    /// For `map_err` on a thread spawn.
    pub(crate) fn thread(name: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Thread { name, source }
    }

    /// For `map_err` on a store call.
    pub(crate) fn store(what: &'static str) -> impl FnOnce(haifu_store::StoreError) -> Self {
        move |source| Self::Store { what, source }
    }

    /// For `map_err` on an install-root call.
    pub(crate) fn install(what: &'static str) -> impl FnOnce(haifu_install::InstallError) -> Self {
        move |source| Self::Install { what, source }
    }
}

//! One module per subcommand: its arguments and its `run`.

pub(crate) mod api;
pub(crate) mod audit;
pub(crate) mod ca;
pub(crate) mod check;
pub(crate) mod completions;
pub(crate) mod daemon;
pub(crate) mod demo;
pub(crate) mod export;
pub(crate) mod fleet;
pub(crate) mod fleet_args;
mod fleet_stages;
pub(crate) mod fsck;
pub(crate) mod gate;
pub(crate) mod keys;
pub(crate) mod manifest;
pub(crate) mod metrics;
pub(crate) mod plugins;
pub(crate) mod policy;
pub(crate) mod register;
pub(crate) mod rollback;
pub(crate) mod run;
pub(crate) mod schema;
pub(crate) mod service;
pub(crate) mod simulate;
pub(crate) mod status;
pub(crate) mod versions;

//! One module per subcommand: its arguments and its `run`.

pub mod api;
pub mod audit;
pub mod ca;
pub mod check;
pub mod daemon;
pub mod demo;
pub mod export;
pub mod fleet;
pub mod fleet_args;
pub mod fsck;
pub mod gate;
pub mod keys;
pub mod manifest;
pub mod plugins;
pub mod policy;
pub mod register;
pub mod run;
pub mod service;
pub mod simulate;
pub mod status;
pub mod versions;

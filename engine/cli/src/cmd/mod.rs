//! One module per subcommand: its arguments and its `run`.

pub mod export;
pub mod fsck;
pub mod keys;
pub mod manifest;
pub mod register;
pub mod versions;

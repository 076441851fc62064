//! haifu's run driver.
//!
//! What it does: turns a validated workflow plan into a durable run. The run
//! machine ([`machine`]) is pure — it takes `now` and facts as arguments and
//! returns commands; the driver ([`driver`]) carries those commands out
//! through the ledger (every transition is one transaction), the policies and
//! a fleet, with time from a [`clock::Clock`]. A run killed at any moment and
//! driven again resumes from the ledger.
//!
//! What it does not do: move bytes. The simulated fleet ([`sim`]) models the
//! broadcast; the real fleet plugs in behind the same driver.
#![forbid(unsafe_code)]

pub mod clock;
pub mod driver;
pub mod gate;
pub mod machine;
pub mod register;
pub mod report;
pub mod rollout;
pub mod session;
pub mod sim;
pub mod stage;

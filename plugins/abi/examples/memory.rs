//! A complete third-party transport plugin written from `haifu-transport-abi`
//! alone: datagram groups that live in the memory of one process.
//!
//! Every group opened with the same `name=` receives every datagram sent to
//! that name (its own included, like multicast with loopback on). It is
//! useful for tests of the engine without sockets, and short enough to read
//! in one sitting.
//!
//! Outside this workspace the plugin is its own crate:
//!
//! ```toml
//! [package]
//! name = "haifu-transport-memory"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! haifu-transport-abi = "0.1"
//! ```
//!
//! `cargo build --release` then gives `libhaifu_transport_memory.so`; drop it
//! into haifu's plugins folder and `haifu plugins` lists it. Here it builds
//! with `cargo build -p haifu-transport-abi --example memory`.

#![deny(unsafe_code)]

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};

use haifu_transport_abi::{Config, DatagramGroup, Error, Timeout, Transport, export_transport};

/// The inboxes of each group's members, by group name.
type Members = Arc<Mutex<HashMap<String, Vec<Sender<Vec<u8>>>>>>;

/// The plugin instance: the members of each group, by group name.
#[derive(Debug, Default)]
pub struct Memory {
    groups: Members,
}

impl Transport for Memory {
    const NAME: &'static str = "memory";
    const VERSION: &'static str = "0.1.0";

    fn init(config: &Config) -> Result<Self, Error> {
        config.check_known(&[])?;
        Ok(Self::default())
    }
}

/// One member of a group.
#[derive(Debug)]
pub struct MemoryGroup {
    name: String,
    groups: Members,
    inbox: Mutex<Receiver<Vec<u8>>>,
    max_datagram: usize,
}

impl DatagramGroup for MemoryGroup {
    type Transport = Memory;

    fn open(transport: &Memory, config: &Config) -> Result<Self, Error> {
        config.check_known(&["name", "max_datagram"])?;
        let name = config.require("name")?.to_owned();
        let max_datagram = config.parse_or("max_datagram", 65_507usize)?;
        let (tx, rx) = channel();
        let mut groups = transport
            .groups
            .lock()
            .map_err(|_| Error::internal("group table poisoned"))?;
        groups.entry(name.clone()).or_default().push(tx);
        Ok(Self {
            name,
            groups: Arc::clone(&transport.groups),
            inbox: Mutex::new(rx),
            max_datagram,
        })
    }

    fn send(&self, datagram: &[u8]) -> Result<(), Error> {
        if datagram.len() > self.max_datagram {
            return Err(Error::too_large(format!(
                "datagram of {} bytes, limit {}",
                datagram.len(),
                self.max_datagram
            )));
        }
        let mut groups = self
            .groups
            .lock()
            .map_err(|_| Error::internal("group table poisoned"))?;
        if let Some(members) = groups.get_mut(&self.name) {
            // A member that closed has dropped its receiver: forget it.
            members.retain(|m| m.send(datagram.to_vec()).is_ok());
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8], timeout: Timeout) -> Result<usize, Error> {
        let inbox = self
            .inbox
            .lock()
            .map_err(|_| Error::internal("inbox poisoned"))?;
        let datagram = match timeout {
            None => inbox.recv().map_err(|_| Error::closed("group closed"))?,
            Some(t) => inbox.recv_timeout(t).map_err(|e| match e {
                RecvTimeoutError::Timeout => Error::timeout(),
                RecvTimeoutError::Disconnected => Error::closed("group closed"),
            })?,
        };
        let Some(dst) = buf.get_mut(..datagram.len()) else {
            return Err(Error::new(
                haifu_transport_abi::status::BUFFER_TOO_SMALL,
                format!("datagram of {} bytes, buffer {}", datagram.len(), buf.len()),
            ));
        };
        dst.copy_from_slice(&datagram);
        Ok(datagram.len())
    }
}

export_transport! {
    transport: Memory,
    datagram: MemoryGroup,
}

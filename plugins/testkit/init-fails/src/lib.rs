//! Test fixture: a well-formed plugin whose `init` returns an error.

#![deny(unsafe_code)]

use haifu_transport_abi::{Config, DatagramGroup, Error, Timeout, Transport, export_transport};

/// The plugin instance (never created).
#[derive(Debug)]
pub struct Fixture;

impl Transport for Fixture {
    const NAME: &'static str = "init-fails";
    const VERSION: &'static str = "0.0.0";

    fn init(_config: &Config) -> Result<Self, Error> {
        Err(Error::io("no usable network interface (test fixture)"))
    }
}

/// A group that is never opened.
#[derive(Debug)]
pub struct Group;

impl DatagramGroup for Group {
    type Transport = Fixture;

    fn open(_: &Fixture, _: &Config) -> Result<Self, Error> {
        Err(Error::unsupported("fixture"))
    }

    fn send(&self, _: &[u8]) -> Result<(), Error> {
        Err(Error::unsupported("fixture"))
    }

    fn recv(&self, _: &mut [u8], _: Timeout) -> Result<usize, Error> {
        Err(Error::unsupported("fixture"))
    }
}

export_transport! {
    transport: Fixture,
    datagram: Group,
}

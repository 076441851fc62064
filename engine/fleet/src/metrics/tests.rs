//! The encoders, the listener and the catalogue.

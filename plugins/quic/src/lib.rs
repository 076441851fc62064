//! haifu transport plugin: QUIC peer streams with mutual TLS

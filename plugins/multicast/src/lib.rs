//! haifu transport plugin: UDP multicast datagram groups

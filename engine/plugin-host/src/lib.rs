//! haifu transport plugin loader

//! haifu policies: the hardened Rhai facade

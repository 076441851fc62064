//! haifu install (skeleton)

//! haifu carousel (skeleton)

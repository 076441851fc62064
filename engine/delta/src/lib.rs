//! haifu delta (skeleton)

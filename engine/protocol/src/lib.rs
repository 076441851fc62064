//! haifu protocol (skeleton)

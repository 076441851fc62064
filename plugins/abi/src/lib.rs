//! the C ABI between haifu and its transport plugins

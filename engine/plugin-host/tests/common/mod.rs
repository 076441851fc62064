//! Helpers shared by the integration tests: find the plugin libraries that
//! cargo built as dev-dependencies, next to the test executable.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};

/// The built library of crate `crate_name` (dashes or underscores).
pub(crate) fn plugin_path(crate_name: &str) -> PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    // The newer of the two: a plugin built on its own beside a newer build
    // as a dev-dependency must not shadow it.
    if let Some(p) = [dir.join(&file), dir.join("deps").join(&file)]
        .into_iter()
        .filter(|p| p.exists())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    {
        return p;
    }
    panic!(
        "{file} not found near {}; is it a dev-dependency?",
        dir.display()
    );
}

/// Copies a built plugin into `dir`.
pub(crate) fn install(crate_name: &str, dir: &Path) -> PathBuf {
    let src = plugin_path(crate_name);
    let dst = dir.join(src.file_name().unwrap());
    std::fs::copy(&src, &dst).unwrap();
    dst
}

/// Copies a built library into `dir` under the file name of plugin `name`
/// (`libhaifu_transport_<name>.so`), the only names the loader opens.
pub(crate) fn install_as(crate_name: &str, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(haifu_plugin_host::plugin_file_name(name));
    std::fs::copy(plugin_path(crate_name), &dst).unwrap();
    dst
}

/// A port no other test in this run uses: tests run in parallel threads and
/// multicast groups on one host see each other's traffic.
pub(crate) fn unique_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 2000) as u16 * 10;
    base + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Loads a plugin by crate name.
pub(crate) fn load(crate_name: &str) -> haifu_plugin_host::Plugin {
    haifu_plugin_host::load(&plugin_path(crate_name)).unwrap()
}

//! Test fixture: a plugin built for a future ABI version. The table is
//! written by hand, as a C plugin would, to exercise the raw ABI.

#![deny(unsafe_code)]

use haifu_transport_abi::{ABI_VERSION, PluginVTable};

static VTABLE: PluginVTable = PluginVTable {
    abi_version: ABI_VERSION + 1,
    ..PluginVTable::empty("bad-version", "0.0.0")
};

/// The entry symbol.
// `no_mangle` is an unsafe attribute (two exported symbols of one name
// would be undefined behaviour); this is the only one the library exports.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn haifu_transport_entry() -> *const PluginVTable {
    &VTABLE
}

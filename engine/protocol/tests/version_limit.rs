//! The longest version `haifu register` accepts fits an `Instruction`: the
//! core's version cap and the wire's identifier cap are one number.

use haifu_core::MAX_VERSION_LEN;
use haifu_protocol::limits::MAX_ID_LEN;

#[test]
fn version_cap_matches_the_wire_limit() {
    assert_eq!(MAX_VERSION_LEN, MAX_ID_LEN);
}

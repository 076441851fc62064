//! Semantic-version helpers registered for scripts.
//!
//! Scripts compare versions as strings the engine hands them; string
//! comparison would order `2.10.0` before `2.9.0`, so they get these instead:
//!
//! | function | returns |
//! |---|---|
//! | `semver_cmp(a, b)` | `-1`, `0` or `1` |
//! | `version_ge(a, b)` | `a >= b` |
//! | `version_gt(a, b)` | `a > b` |
//! | `version_major(v)`, `version_minor(v)`, `version_patch(v)` | the component |
//!
//! A string that is not a semantic version is a runtime error in the script
//! (so the decision falls back to its safe default), never a silent `false`.

use rhai::{Engine, EvalAltResult, INT, Position};
use std::cmp::Ordering;

fn parse(text: &str) -> Result<semver::Version, Box<EvalAltResult>> {
    semver::Version::parse(text.trim()).map_err(|e| {
        Box::new(EvalAltResult::ErrorRuntime(
            format!("not a semantic version: {text:?} ({e})").into(),
            Position::NONE,
        ))
    })
}

fn cmp(a: &str, b: &str) -> Result<Ordering, Box<EvalAltResult>> {
    Ok(parse(a)?.cmp(&parse(b)?))
}

fn component(v: &str, pick: fn(&semver::Version) -> u64) -> Result<INT, Box<EvalAltResult>> {
    Ok(INT::try_from(pick(&parse(v)?)).unwrap_or(INT::MAX))
}

pub(crate) fn register(engine: &mut Engine) {
    engine.register_fn("semver_cmp", |a: &str, b: &str| cmp(a, b).map(|o| o as INT));
    engine.register_fn("version_ge", |a: &str, b: &str| {
        cmp(a, b).map(Ordering::is_ge)
    });
    engine.register_fn("version_gt", |a: &str, b: &str| {
        cmp(a, b).map(Ordering::is_gt)
    });
    engine.register_fn("version_major", |v: &str| component(v, |v| v.major));
    engine.register_fn("version_minor", |v: &str| component(v, |v| v.minor));
    engine.register_fn("version_patch", |v: &str| component(v, |v| v.patch));
}

#[cfg(test)]
mod tests {
    use crate::hardening::{Limits, hardened_engine};

    #[test]
    fn scripts_compare_versions_numerically() {
        let engine = hardened_engine(&Limits::default());
        assert!(
            engine
                .eval::<bool>(r#"version_ge("2.10.0", "2.9.0")"#)
                .unwrap()
        );
        assert!(
            !engine
                .eval::<bool>(r#"version_gt("2.4.0", "2.4.0")"#)
                .unwrap()
        );
        assert_eq!(
            engine
                .eval::<i64>(r#"semver_cmp("1.0.0", "1.0.1")"#)
                .unwrap(),
            -1
        );
        assert_eq!(engine.eval::<i64>(r#"version_minor("2.4.1")"#).unwrap(), 4);
    }

    #[test]
    fn a_bad_version_is_a_runtime_error() {
        let engine = hardened_engine(&Limits::default());
        let err = engine
            .eval::<bool>(r#"version_ge("two", "1.0.0")"#)
            .unwrap_err();
        assert!(err.to_string().contains("not a semantic version"), "{err}");
    }
}

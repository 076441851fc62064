//! The one place that builds a Rhai [`Engine`] for policies.
//!
//! Every limit a runaway or hostile script could hit is set here, so a policy
//! can never hang the master or exhaust its memory: it ends with a limit error
//! and the caller falls back to the documented safe default.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{Dynamic, Engine};

use crate::version;

/// The limits every policy script runs under.
///
/// The defaults are generous for decision functions of a few dozen lines
/// (a typical call uses well under a thousand operations) and small enough
/// that `loop {}` ends in about a millisecond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Operations per call (`loop {}` ends with "too many operations").
    pub max_operations: u64,
    /// Nested function calls (unbounded recursion ends with a stack overflow).
    pub max_call_levels: usize,
    /// Expression nesting at the top level of a script.
    pub max_expr_depth: usize,
    /// Expression nesting inside functions.
    pub max_function_expr_depth: usize,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Elements in one array.
    pub max_array_size: usize,
    /// Entries in one object map.
    pub max_map_size: usize,
    /// Variables alive at once.
    pub max_variables: usize,
    /// Functions one script may define.
    pub max_functions: usize,
    /// Wall-clock time per call, checked every few hundred operations.
    pub max_wall_time: Duration,
    /// Bytes of source text in one script file.
    pub max_source_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 100_000,
            max_call_levels: 16,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_size: 16 * 1024,
            max_array_size: 1024,
            max_map_size: 256,
            max_variables: 64,
            max_functions: 64,
            max_wall_time: Duration::from_millis(50),
            max_source_size: 256 * 1024,
        }
    }
}

thread_local! {
    /// The wall-clock deadline of the policy call running on this thread.
    ///
    /// `on_progress` receives no per-call context, and one [`Engine`] is shared
    /// by every task; a Rhai call runs to completion on the calling thread, so
    /// a thread-local deadline set around each call is exact and needs no lock.
    static CALL_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Arms the wall-clock guard for one call on this thread; disarms on drop.
#[derive(Debug)]
pub(crate) struct WallClockGuard {
    previous: Option<Instant>,
}

impl WallClockGuard {
    pub(crate) fn arm(limit: Duration) -> Self {
        let deadline = Instant::now().checked_add(limit);
        let previous = CALL_DEADLINE.with(|d| d.replace(deadline));
        WallClockGuard { previous }
    }
}

impl Drop for WallClockGuard {
    fn drop(&mut self) {
        CALL_DEADLINE.with(|d| d.set(self.previous));
    }
}

/// How often (in operations) the wall clock is read: reading it on every
/// operation would cost more than most policy calls.
const CLOCK_EVERY_OPS: u64 = 256;

/// Builds the hardened engine every policy runs in.
///
/// - limits on operations, call levels, expression depth, string, array and
///   map sizes, variables and functions, from `limits`;
/// - no modules: `import` is a disabled keyword, the module resolver resolves
///   nothing and the module limit is 0;
/// - `eval` is disabled (a script cannot compile code at run time);
/// - undeclared variables are compile errors (typos surface at load);
/// - a wall-clock guard ends a call that runs longer than
///   [`Limits::max_wall_time`];
/// - `print` and `debug` go to `tracing`, never to stdout;
/// - semver helpers are registered (see [`crate::version`]).
pub fn hardened_engine(limits: &Limits) -> Engine {
    let mut engine = Engine::new();
    // Full optimisation folds constants and prunes dead branches once, at
    // compile time; policies are compiled once and called many times.
    engine.set_optimization_level(rhai::OptimizationLevel::Full);
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_function_expr_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_variables(limits.max_variables)
        .set_max_functions(limits.max_functions)
        .set_max_modules(0)
        .set_module_resolver(DummyModuleResolver::new())
        .set_strict_variables(true)
        .disable_symbol("eval")
        .disable_symbol("import")
        .disable_symbol("export");
    engine.on_print(|text| tracing::info!(target: "haifu_policy::script", "{text}"));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(
            target: "haifu_policy::script",
            source = source.unwrap_or("-"),
            line = pos.line().unwrap_or(0),
            "{text}"
        );
    });
    engine.on_progress(|ops| {
        if ops % CLOCK_EVERY_OPS != 0 {
            return None;
        }
        let deadline = CALL_DEADLINE.with(Cell::get)?;
        if Instant::now() >= deadline {
            Some(Dynamic::from("wall-clock limit"))
        } else {
            None
        }
    });
    version::register(&mut engine);
    crate::facts::register(&mut engine);
    crate::advance::register(&mut engine);
    engine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_and_ast_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
        assert_send_sync::<rhai::AST>();
    }

    #[test]
    fn eval_and_import_are_rejected_at_compile_time() {
        let engine = hardened_engine(&Limits::default());
        assert!(engine.compile(r#"fn f() { eval("1") }"#).is_err());
        assert!(engine.compile(r#"import "x" as y;"#).is_err());
    }

    #[test]
    fn undeclared_variables_are_compile_errors() {
        let engine = hardened_engine(&Limits::default());
        assert!(engine.compile("fn f() { nope + 1 }").is_err());
        assert!(engine.compile("fn f(x) { x + 1 }").is_ok());
    }

    #[test]
    fn wall_clock_guard_restores_the_previous_deadline() {
        assert_eq!(CALL_DEADLINE.with(Cell::get), None);
        {
            let _g = WallClockGuard::arm(Duration::from_secs(1));
            assert!(CALL_DEADLINE.with(Cell::get).is_some());
        }
        assert_eq!(CALL_DEADLINE.with(Cell::get), None);
    }

    #[test]
    fn wall_clock_guard_ends_a_slow_call() {
        let limits = Limits {
            max_operations: 0, // unlimited: only the clock can stop it
            max_wall_time: Duration::from_millis(20),
            ..Limits::default()
        };
        let engine = hardened_engine(&limits);
        let ast = engine.compile("fn spin() { loop {} }").unwrap();
        let _g = WallClockGuard::arm(limits.max_wall_time);
        let started = Instant::now();
        let err = engine
            .call_fn::<Dynamic>(&mut rhai::Scope::new(), &ast, "spin", ())
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(err.to_string().contains("terminated"), "{err}");
    }
}

//! One compiled policy script, and how its failures are classified.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, FuncArgs, Scope};

use crate::decision::{FallbackCause, LimitKind, Role};
use crate::error::{LoadWarning, PolicyError, lowercase_first};
use crate::hardening::{Limits, WallClockGuard};

/// A script compiled once; shared read-only by every call and task.
#[derive(Debug)]
pub struct Script {
    path: PathBuf,
    ast: AST,
    /// `(name, arity)` of every function the script defines.
    functions: HashSet<(String, usize)>,
    /// Whether each role's entry point exists, by [`Role::ALL`] index:
    /// checked once at compile time, so a call costs no lookup and a missing
    /// entry point costs no Rhai call.
    entry_points: [bool; Role::ALL.len()],
}

impl Script {
    /// Reads and compiles the script at `path`.
    ///
    /// # Errors
    /// [`PolicyError::Read`], [`PolicyError::TooLarge`] or
    /// [`PolicyError::Syntax`] (with the script's own line and column).
    pub fn load(engine: &Engine, limits: &Limits, path: &Path) -> Result<Script, PolicyError> {
        // Read with the compile limit as the cap: a larger file is refused
        // before it is read whole.
        let cap = limits.max_source_size as u64;
        let source = crate::input::read_text(path, cap, "policy scripts").map_err(|source| {
            PolicyError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Script::compile(engine, limits, path, &source)
    }

    /// Compiles `source`, naming `path` in errors.
    ///
    /// # Errors
    /// [`PolicyError::TooLarge`] or [`PolicyError::Syntax`].
    pub fn compile(
        engine: &Engine,
        limits: &Limits,
        path: &Path,
        source: &str,
    ) -> Result<Script, PolicyError> {
        if source.len() > limits.max_source_size {
            return Err(PolicyError::TooLarge {
                path: path.to_path_buf(),
                size: source.len(),
                max: limits.max_source_size,
            });
        }
        let mut ast = engine.compile(source).map_err(|e| {
            let pos = e.position();
            // Rhai gives no position for some errors found at the end of the
            // input (an unterminated string, say): point at the end then.
            let (line, column) = match pos.line() {
                Some(line) => (line, pos.position().unwrap_or(1)),
                None => end_of(source),
            };
            PolicyError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: lowercase_first(&e.err_type().to_string()),
            }
        })?;
        ast.set_source(path.display().to_string());
        let functions: HashSet<(String, usize)> = ast
            .iter_functions()
            .map(|f| (f.name.to_string(), f.params.len()))
            .collect();
        let entry_points = Role::ALL.map(|role| {
            let (name, params) = role.entry_point();
            functions.contains(&(name.to_string(), params.len()))
        });
        Ok(Script {
            path: path.to_path_buf(),
            ast,
            functions,
            entry_points,
        })
    }

    /// The script's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the script defines `role`'s entry point with the right arity.
    pub fn has_entry_point(&self, role: Role) -> bool {
        self.entry_points[role.index()]
    }

    /// A warning when the script lacks `role`'s entry point.
    pub fn check_entry_point(&self, role: Role) -> Option<LoadWarning> {
        if self.has_entry_point(role) {
            return None;
        }
        let (name, _) = role.entry_point();
        let mut other_arities: Vec<usize> = self
            .functions
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, arity)| *arity)
            .collect();
        other_arities.sort_unstable();
        Some(LoadWarning {
            path: self.path.clone(),
            role,
            other_arities,
        })
    }

    /// Calls `role`'s entry point with `args` under the limits.
    pub(crate) fn call(
        &self,
        engine: &Engine,
        limits: &Limits,
        role: Role,
        args: impl FuncArgs,
    ) -> Result<Dynamic, FallbackCause> {
        if !self.has_entry_point(role) {
            return Err(FallbackCause::MissingFunction);
        }
        let (name, _) = role.entry_point();
        let _guard = WallClockGuard::arm(limits.max_wall_time);
        // `eval_ast(false)`: top-level statements are not run per call (they
        // would cost every call, and functions cannot see them anyway). A new
        // scope per call: reusing one grows it (spikes E).
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        engine
            .call_fn_with_options::<Dynamic>(options, &mut Scope::new(), &self.ast, name, args)
            .map_err(|e| classify(&e))
    }
}

/// Line and column (from 1) just past the last character of `source`.
fn end_of(source: &str) -> (usize, usize) {
    let line = source.split('\n').count();
    let last = source.rsplit('\n').next().unwrap_or("");
    (line, last.chars().count() + 1)
}

/// Maps a Rhai error to a fallback cause, looking through the
/// "error in function call" wrappers to the error that started it, and keeping
/// the innermost position Rhai reported.
pub(crate) fn classify(err: &EvalAltResult) -> FallbackCause {
    let mut current = err;
    let mut position = position_of(err);
    // Each wrapper is one script call level, and call levels are limited, so
    // this walk is bounded.
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = current
    {
        if let Some(p) = position_of(inner) {
            position = Some(p);
        }
        current = inner;
    }
    match current {
        EvalAltResult::ErrorTooManyOperations(_) => FallbackCause::Limit(LimitKind::Operations),
        EvalAltResult::ErrorStackOverflow(_) => FallbackCause::Limit(LimitKind::CallDepth),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            FallbackCause::Limit(LimitKind::DataSize(what.clone()))
        }
        EvalAltResult::ErrorTooManyVariables(_) => FallbackCause::Limit(LimitKind::Variables),
        EvalAltResult::ErrorTooManyModules(_) => FallbackCause::Limit(LimitKind::Modules),
        EvalAltResult::ErrorTerminated(_, _) => FallbackCause::Limit(LimitKind::WallClock),
        other => {
            // Rhai's Display appends " (line L, position C)"; we carry the
            // position separately, so strip it from the message.
            let full = other.to_string();
            let message = match full.rfind(" (line ") {
                Some(i) if full.ends_with(')') => &full[..i],
                _ => full.as_str(),
            };
            FallbackCause::Runtime {
                message: lowercase_first(message),
                position,
            }
        }
    }
}

fn position_of(err: &EvalAltResult) -> Option<(usize, usize)> {
    let pos = err.position();
    Some((pos.line()?, pos.position().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardening::hardened_engine;

    fn compile(src: &str) -> Result<Script, PolicyError> {
        let limits = Limits::default();
        Script::compile(&hardened_engine(&limits), &limits, Path::new("p.rhai"), src)
    }

    #[test]
    fn syntax_error_carries_the_script_position() {
        let err = compile("fn next_round(ctx) {\n  let x = ;\n}").unwrap_err();
        let PolicyError::Syntax { line, column, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((*line, *column), (2, 11));
        assert!(err.to_string().starts_with("p.rhai:2:11: "), "{err}");
    }

    #[test]
    fn entry_points_are_checked_by_name_and_arity() {
        let s = compile("fn next_round(a, b) { 1 }\nfn allow(c, s) { true }").unwrap();
        assert!(s.has_entry_point(Role::Restrict));
        let w = s.check_entry_point(Role::Retry).unwrap();
        assert_eq!(w.other_arities, vec![2]);
        assert!(w.to_string().contains("found next_round with 2 parameters"));
        assert!(
            s.check_entry_point(Role::Disconnect)
                .unwrap()
                .other_arities
                .is_empty()
        );
    }

    #[test]
    fn an_error_without_position_points_at_the_end() {
        assert_eq!(end_of("ab\ncd"), (2, 3));
        assert_eq!(end_of(""), (1, 1));
        let err = compile("fn f() {\n  \"abc").unwrap_err();
        let PolicyError::Syntax { line, .. } = err else {
            panic!("{err:?}");
        };
        assert!(line > 0);
    }

    #[test]
    fn too_large_source_is_refused() {
        let big = "// x\n".repeat(100_000);
        assert!(matches!(compile(&big), Err(PolicyError::TooLarge { .. })));
    }

    #[test]
    fn runtime_error_position_is_the_innermost() {
        let limits = Limits::default();
        let engine = hardened_engine(&limits);
        let s = Script::compile(
            &engine,
            &limits,
            Path::new("p.rhai"),
            "fn helper(x) {\n  x / 0\n}\nfn next_round(ctx) {\n  helper(1)\n}",
        )
        .unwrap();
        let cause = s
            .call(&engine, &limits, Role::Retry, (Dynamic::UNIT,))
            .unwrap_err();
        let FallbackCause::Runtime { message, position } = cause else {
            panic!("{cause:?}");
        };
        assert_eq!(position.map(|p| p.0), Some(2), "{message}");
        assert!(message.contains("division by zero"), "{message}");
    }
}

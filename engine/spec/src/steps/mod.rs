//! The closed set of steps. Each lives in its own module (its spec, its pure
//! validation, its progress machine); adding one touches that module and the
//! list in [`StepKind`].

pub mod audit;
pub mod broadcast;
pub mod delta;
pub mod disconnect;
pub mod machine;
pub mod register;

use jiff::Timestamp;

use crate::error::ErrorKind;
use crate::fields::{Cx, join};
use crate::pos::Pos;
use crate::shape::Key;
use crate::suggest::did_you_mean;
use haifu_yaml::{Node, Value};

pub use audit::Audit;
pub use broadcast::Broadcast;
pub use delta::Delta;
pub use disconnect::Disconnect;
pub use register::Register;

/// The kinds of step, in the only order they may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepKind {
    /// [`register`]
    Register,
    /// [`broadcast`]
    Broadcast,
    /// [`audit`]
    Audit,
    /// [`delta`]
    Delta,
    /// [`disconnect`]
    Disconnect,
}

impl StepKind {
    /// Every step, in order. The one list to extend.
    pub const ALL: [StepKind; 5] = [
        StepKind::Register,
        StepKind::Broadcast,
        StepKind::Audit,
        StepKind::Delta,
        StepKind::Disconnect,
    ];

    /// The name a workflow uses.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Register => "register",
            StepKind::Broadcast => "broadcast",
            StepKind::Audit => "audit",
            StepKind::Delta => "delta",
            StepKind::Disconnect => "disconnect",
        }
    }

    /// The step that must come somewhere before this one.
    pub fn needs(self) -> Option<StepKind> {
        match self {
            StepKind::Audit => Some(StepKind::Broadcast),
            StepKind::Delta => Some(StepKind::Audit),
            _ => None,
        }
    }

    /// Its options (the keys of `- step: { ... }`).
    pub(crate) fn options(self) -> &'static [Key] {
        match self {
            StepKind::Register => register::OPTIONS,
            StepKind::Broadcast => broadcast::OPTIONS,
            StepKind::Audit => audit::OPTIONS,
            StepKind::Delta => delta::OPTIONS,
            StepKind::Disconnect => disconnect::OPTIONS,
        }
    }

    /// What it does, in a sentence (the schema's description).
    pub(crate) fn summary(self) -> &'static str {
        match self {
            StepKind::Register => {
                "Store the artifact and record it in the ledger. No options; first if present."
            }
            StepKind::Broadcast => {
                "Multicast the artifact in rounds; the retry policy sets the gaps and may stop \
                 early."
            }
            StepKind::Audit => {
                "List per relay who confirmed and who did not. No options; needs an earlier \
                 broadcast."
            }
            StepKind::Delta => {
                "Send each straggler that boots only the difference, over the unicast \
                 transport. Needs an earlier audit."
            }
            StepKind::Disconnect => {
                "At the deadline, cut off the stragglers the disconnect policy names. No \
                 options; last if present."
            }
        }
    }

    fn from_name(name: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One step of a workflow, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Store and record the artifact.
    Register(Register),
    /// Multicast it in rounds.
    Broadcast(Broadcast),
    /// List who has it.
    Audit(Audit),
    /// Send stragglers the difference.
    Delta(Delta),
    /// Cut off those still behind.
    Disconnect(Disconnect),
}

impl Step {
    /// Which step this is.
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Register(_) => StepKind::Register,
            Step::Broadcast(_) => StepKind::Broadcast,
            Step::Audit(_) => StepKind::Audit,
            Step::Delta(_) => StepKind::Delta,
            Step::Disconnect(_) => StepKind::Disconnect,
        }
    }

    /// Where it is written.
    pub fn pos(&self) -> Pos {
        match self {
            Step::Register(s) => s.pos,
            Step::Broadcast(s) => s.pos,
            Step::Audit(s) => s.pos,
            Step::Delta(s) => s.pos,
            Step::Disconnect(s) => s.pos,
        }
    }
}

/// Reads one entry of `steps`: `- audit` or `- broadcast: { rounds: 3 }`.
/// Returns the step's kind and position when the name is known (even if its
/// options are wrong), and the step when it parsed.
pub(crate) fn parse(
    node: &Node,
    index: usize,
    cx: &mut Cx,
) -> (Option<(StepKind, Pos)>, Option<Step>) {
    let (name_node, args): (&Node, Option<&Node>) = match &node.value {
        Value::Scalar { .. } if !node.is_null() => (node, None),
        Value::Map(entries) if !entries.is_empty() => {
            let (k, v) = &entries[0];
            for (extra, _) in &entries[1..] {
                extra_key_error(k, extra, cx);
            }
            (k, (!v.is_null()).then_some(v))
        }
        _ => {
            cx.error(
                node.pos,
                ErrorKind::WrongType {
                    key: format!("steps[{index}]"),
                    expected: "a step name or a mapping of one step to its options",
                    found: crate::fields::found(node),
                },
            );
            return (None, None);
        }
    };
    let name = name_node.scalar().unwrap_or_default();
    let Some(kind) = StepKind::from_name(name) else {
        let known: Vec<&str> = StepKind::ALL.iter().map(|k| k.name()).collect();
        cx.error(
            name_node.pos,
            ErrorKind::UnknownStep {
                name: name.to_string(),
                suggestion: did_you_mean(name, &known),
            },
        );
        return (None, None);
    };
    let section = join(&format!("steps[{index}]"), kind.name());
    let pos = name_node.pos;
    let step = match kind {
        StepKind::Register => register::parse(pos, args, &section, cx).map(Step::Register),
        StepKind::Broadcast => broadcast::parse(pos, args, &section, cx).map(Step::Broadcast),
        StepKind::Audit => audit::parse(pos, args, &section, cx).map(Step::Audit),
        StepKind::Delta => delta::parse(pos, args, &section, cx).map(Step::Delta),
        StepKind::Disconnect => disconnect::parse(pos, args, &section, cx).map(Step::Disconnect),
    };
    (Some((kind, pos)), step)
}

/// A step entry with two keys, usually an option not indented under its step:
/// `- broadcast:` then `  rounds: 3` at the same column.
fn extra_key_error(step: &Node, extra: &Node, cx: &mut Cx) {
    let step_name = step.scalar().unwrap_or_default();
    let extra_name = extra.scalar().unwrap_or_default();
    let belongs = StepKind::from_name(step_name)
        .is_some_and(|k| k.options().iter().any(|o| o.name == extra_name));
    let message = if belongs {
        format!("{extra_name:?} is an option of {step_name:?}: indent it under {step_name:?}")
    } else {
        format!("a step entry holds one step; found {extra_name:?} beside {step_name:?}")
    };
    cx.error(extra.pos, ErrorKind::StepOrder(message));
}

/// Pure per-step checks.
pub(crate) fn validate_each(steps: &[Step], schedule: Option<(Timestamp, Timestamp)>, cx: &mut Cx) {
    for (i, step) in steps.iter().enumerate() {
        let section = format!("steps[{i}].{}", step.kind().name());
        match step {
            Step::Broadcast(b) => b.validate(&section, cx),
            Step::Delta(d) => d.validate(&section, schedule, cx),
            Step::Register(_) | Step::Audit(_) | Step::Disconnect(_) => {}
        }
    }
}

/// Checks the order: each step at most once, in [`StepKind::ALL`] order,
/// `register` first, `disconnect` last, and each step's prerequisite present.
pub(crate) fn validate_order(steps: &[(StepKind, Pos)], cx: &mut Cx) {
    let mut seen: Vec<(StepKind, Pos)> = Vec::new();
    let last = steps.len().saturating_sub(1);
    for (i, &(kind, pos)) in steps.iter().enumerate() {
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == kind) {
            cx.error(
                pos,
                ErrorKind::DuplicateStep {
                    name: kind.name(),
                    first: *first,
                },
            );
            continue;
        }
        let order = |m: String| ErrorKind::StepOrder(m);
        if kind == StepKind::Register && i != 0 {
            cx.error(pos, order("step \"register\" must come first".into()));
        } else if kind == StepKind::Disconnect && i != last {
            cx.error(pos, order("step \"disconnect\" must come last".into()));
        } else if let Some((later, _)) = seen
            .iter()
            .filter(|(k, _)| *k > kind && !matches!(k, StepKind::Register | StepKind::Disconnect))
            .max()
        {
            cx.error(
                pos,
                order(format!(
                    "step {:?} cannot come after {:?}",
                    kind.name(),
                    later.name()
                )),
            );
        }
        if let Some(need) = kind.needs()
            && !steps.iter().any(|(k, _)| *k == need)
        {
            cx.error(
                pos,
                order(format!(
                    "step {:?} needs an earlier {:?} step",
                    kind.name(),
                    need.name()
                )),
            );
        }
        seen.push((kind, pos));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_errors(yaml: &str) -> Vec<String> {
        let mut cx = Cx::new("w.yaml".into());
        let node = haifu_yaml::parse(yaml).unwrap().unwrap();
        let Value::Seq(items) = &node.value else {
            panic!()
        };
        let kinds: Vec<(StepKind, Pos)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| parse(n, i, &mut cx).0)
            .collect();
        validate_order(&kinds, &mut cx);
        cx.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_canonical_order_is_accepted() {
        assert!(
            order_errors("[register, {broadcast: {rounds: 3}}, audit, delta, disconnect]")
                .is_empty()
        );
        assert!(order_errors("[{broadcast: {rounds: 1}}, audit]").is_empty());
    }

    #[test]
    fn impossible_orders_are_named() {
        assert_eq!(
            order_errors("[audit, {broadcast: {rounds: 3}}]"),
            vec!["w.yaml:1:10: step \"broadcast\" cannot come after \"audit\""]
        );
        assert_eq!(
            order_errors("[{broadcast: {rounds: 3}}, register]"),
            vec!["w.yaml:1:28: step \"register\" must come first"]
        );
        assert_eq!(
            order_errors("[{broadcast: {rounds: 3}}, disconnect, audit]"),
            vec!["w.yaml:1:28: step \"disconnect\" must come last"]
        );
        assert_eq!(
            order_errors("[{broadcast: {rounds: 3}}, delta]"),
            vec!["w.yaml:1:28: step \"delta\" needs an earlier \"audit\" step"]
        );
        assert_eq!(
            order_errors("[audit]"),
            vec!["w.yaml:1:2: step \"audit\" needs an earlier \"broadcast\" step"]
        );
        assert_eq!(
            order_errors("[{broadcast: {rounds: 3}}, audit, audit]"),
            vec!["w.yaml:1:35: duplicate step \"audit\" (first at 1:28)"]
        );
    }

    #[test]
    fn unknown_steps_get_a_suggestion() {
        assert_eq!(
            order_errors("[brodcast]"),
            vec!["w.yaml:1:2: unknown step \"brodcast\" (did you mean \"broadcast\"?)"]
        );
        assert_eq!(
            order_errors("[upload]"),
            vec!["w.yaml:1:2: unknown step \"upload\""]
        );
    }

    #[test]
    fn an_option_beside_its_step_is_explained() {
        assert_eq!(
            order_errors("- broadcast:\n  rounds: 3\n"),
            vec![
                "w.yaml:2:3: \"rounds\" is an option of \"broadcast\": indent it under \"broadcast\"",
                "w.yaml:1:3: missing required key \"rounds\" in steps[0].broadcast",
            ]
        );
    }
}

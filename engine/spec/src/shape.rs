//! The workflow's keys: their names, which are required, what kind of value
//! each takes and what it means. The one table both readers of that shape
//! use: the parser (which keys a mapping knows, which it requires) and
//! [`crate::schema`] (the JSON Schema editors check and complete with).
//!
//! What a value means beyond its kind (a date, a duration, a version) is
//! stage 2's ([`crate::validate`]); the table only describes it.

/// One key of a mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    /// As written in the file.
    pub name: &'static str,
    /// Whether the mapping must hold it (with a value other than null).
    pub required: bool,
    /// What it holds.
    pub kind: Kind,
    /// What it means, for people: the schema's description.
    pub doc: &'static str,
}

/// What kind of value a key holds, as stage 1 reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Any scalar but null, read as text (`fields::string`).
    Text,
    /// An unquoted whole number within these bounds (`fields::uint`; the
    /// bounds are checked in stage 2).
    Count {
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
    /// An unquoted `true` or `false` (`fields::flag`).
    Flag,
    /// A list of text values (`fields::string_list`).
    TextList,
    /// A mapping of text keys to text values (`labels`).
    TextMap,
    /// A mapping of these keys, no others.
    Map(&'static [Key]),
    /// A mapping of these keys, of which at least one holds a non-empty
    /// list (`targets`).
    MapOfLists(&'static [Key]),
    /// The list of steps ([`crate::steps`] knows each step's options).
    Steps,
    /// A non-empty list of mappings of these keys, each naming at least one
    /// of the keys `any_of` holds (`stages`).
    List {
        /// The keys of each entry.
        keys: &'static [Key],
        /// At least one of these must be present in each entry.
        any_of: &'static [&'static str],
    },
}

/// The names of `keys`, for the unknown-key check and its suggestion.
pub(crate) fn names(keys: &[Key]) -> Vec<&'static str> {
    keys.iter().map(|k| k.name).collect()
}

pub(crate) const fn key(name: &'static str, required: bool, kind: Kind, doc: &'static str) -> Key {
    Key {
        name,
        required,
        kind,
        doc,
    }
}

/// `name`.
pub(crate) const NAME: Key = key(
    "name",
    true,
    Kind::Text,
    "The workflow's name: letters, digits, '.', '_' and '-', at most 128 characters.",
);
/// `description`.
pub(crate) const DESCRIPTION: Key = key("description", false, Kind::Text, "Free text.");
/// `artifact.name`.
pub(crate) const ARTIFACT_NAME: Key = key(
    "name",
    true,
    Kind::Text,
    "The artifact's name, e.g. pos-app.",
);
/// `artifact.version`.
pub(crate) const ARTIFACT_VERSION: Key = key(
    "version",
    true,
    Kind::Text,
    "A semantic version, 2.4.0 (not 2.4).",
);
/// `artifact.path`.
pub(crate) const ARTIFACT_PATH: Key = key(
    "path",
    true,
    Kind::Text,
    "The file to distribute, relative to the workflow's folder; must exist.",
);
/// `artifact`'s keys.
pub(crate) const ARTIFACT: &[Key] = &[ARTIFACT_NAME, ARTIFACT_VERSION, ARTIFACT_PATH];
/// `targets`'s keys.
pub(crate) const TARGETS: &[Key; 2] = &[
    key("relays", false, Kind::TextList, "Relay names."),
    key("groups", false, Kind::TextList, "Relay-group names."),
];
/// `schedule.start`.
pub(crate) const START: Key = key(
    "start",
    true,
    Kind::Text,
    "RFC 3339 date-time with an offset: 2026-12-01T02:00:00+09:00 or ...Z; an RFC 9557 \
     zone suffix [Asia/Tokyo] is accepted.",
);
/// `schedule.deadline`.
pub(crate) const DEADLINE: Key = key(
    "deadline",
    true,
    Kind::Text,
    "A duration after the start (72h, 6h, 2d, 1h30m, 1w; a day is 24 h, at most a year) \
     or a date-time as for start; after the start.",
);
/// `schedule.time_zone`.
pub(crate) const TIME_ZONE: Key = key(
    "time_zone",
    false,
    Kind::Text,
    "IANA zone of the sites (Asia/Tokyo); policies see local time in it. Default: the \
     fixed offset of start.",
);
/// `schedule.window`.
pub(crate) const WINDOW: Key = key(
    "window",
    false,
    Kind::Text,
    "Daily window in local time, HH:MM-HH:MM (02:00-05:00); may wrap midnight. The retry \
     policy sees it and decides.",
);
/// `schedule.cut_off_while_paused`.
pub(crate) const CUT_OFF_WHILE_PAUSED: Key = key(
    "cut_off_while_paused",
    false,
    Kind::Flag,
    "Whether a run paused when the deadline passes still cuts off its stragglers then (true), \
     or the cut-off waits for the resume (false, the default).",
);
/// `schedule`'s keys.
pub(crate) const SCHEDULE: &[Key] = &[START, DEADLINE, TIME_ZONE, WINDOW, CUT_OFF_WHILE_PAUSED];
/// `transports.broadcast`.
pub(crate) const BROADCAST: Key = key(
    "broadcast",
    true,
    Kind::Text,
    "The datagram-group plugin for rounds, e.g. multicast.",
);
/// `transports.unicast`.
pub(crate) const UNICAST: Key = key(
    "unicast",
    false,
    Kind::Text,
    "The peer-stream plugin for deltas, e.g. quic; needed by the delta step.",
);
/// `transports`'s keys.
pub(crate) const TRANSPORTS: &[Key] = &[BROADCAST, UNICAST];
/// `policies.retry`.
pub(crate) const RETRY: Key = key(
    "retry",
    false,
    Kind::Text,
    "Script with next_round(ctx); default: rounds 1 h apart.",
);
/// `policies.restrict`.
pub(crate) const RESTRICT: Key = key(
    "restrict",
    false,
    Kind::Text,
    "Script with allow(client, service); default: version at least the service's.",
);
/// `policies.disconnect`.
pub(crate) const DISCONNECT: Key = key(
    "disconnect",
    false,
    Kind::Text,
    "Script with disconnect(client); default: nobody is cut off.",
);
/// `policies.broadcast`.
pub(crate) const BROADCAST_POLICY: Key = key(
    "broadcast",
    false,
    Kind::Text,
    "Script with round_budget(ctx); default: 2% proactive repair, 3x the artifact's bytes.",
);
/// `policies.advance`.
pub(crate) const ADVANCE: Key = key(
    "advance",
    false,
    Kind::Text,
    "Script with advance(ctx): after each stage, proceed, wait, pause or abort; default: \
     the stages' gates to the letter.",
);
/// `policies`'s keys.
pub(crate) const POLICIES: &[Key] = &[RETRY, RESTRICT, DISCONNECT, BROADCAST_POLICY, ADVANCE];

/// `stages[].gate.soak`.
pub(crate) const SOAK: Key = key(
    "soak",
    false,
    Kind::Text,
    "How long the stage's clients run the new version before the advance policy \
     decides: a duration (30m, 2h, 1d) counted from the end of the stage's broadcast. \
     Default: no soak.",
);
/// `stages[].gate.min_success`.
pub(crate) const MIN_SUCCESS: Key = key(
    "min_success",
    false,
    Kind::Text,
    "The share of the stage's clients that must have installed without failing, as a \
     percentage (95%, 99.5%), before the next stage starts.",
);
/// `stages[].gate.max_failures`.
pub(crate) const MAX_FAILURES: Key = key(
    "max_failures",
    false,
    Kind::Text,
    "The most failed installs the stage tolerates: a percentage of its clients (2%) or \
     a count (3). Above it the run pauses.",
);
/// `stages[].gate`'s keys.
pub(crate) const GATE: &[Key] = &[SOAK, MIN_SUCCESS, MAX_FAILURES];
/// `stages[].name`.
pub(crate) const STAGE_NAME: Key = key(
    "name",
    false,
    Kind::Text,
    "The stage's name, as the audit shows it (a name: letters, digits, '.', '_', '-'). \
     Default: stage-N.",
);
/// `stages[].relays`.
pub(crate) const STAGE_RELAYS: Key = key(
    "relays",
    false,
    Kind::TextList,
    "Every client behind these relays (not in an earlier stage) is in the stage.",
);
/// `stages[].clients`.
pub(crate) const STAGE_CLIENTS: Key = key(
    "clients",
    false,
    Kind::TextList,
    "These clients, by name (not in an earlier stage), are in the stage.",
);
/// `stages[].labels`.
pub(crate) const STAGE_LABELS: Key = key(
    "labels",
    false,
    Kind::TextMap,
    "Every client (not in an earlier stage) whose config's labels hold all these pairs \
     (ring: canary) is in the stage. Keys: lowercase letters, digits, '_', '-'; values: \
     letters, digits, '.', '_', '-'; at most 16 pairs.",
);
/// `stages[].percent`.
pub(crate) const STAGE_PERCENT: Key = key(
    "percent",
    false,
    Kind::Count { min: 1, max: 100 },
    "This percentage (1 to 100, rounded up) of the clients in no earlier stage, chosen \
     by the seed; percent: 100 takes every remaining client.",
);
/// `stages[].seed`.
pub(crate) const STAGE_SEED: Key = key(
    "seed",
    false,
    Kind::Count {
        min: 0,
        max: u32::MAX as u64,
    },
    "Which clients a percent draws: the same seed and fleet draw the same clients. \
     Default: 0.",
);
/// `stages[].gate`.
pub(crate) const STAGE_GATE: Key = key(
    "gate",
    false,
    Kind::Map(GATE),
    "When the next stage may start: soak, min_success, max_failures. Without a gate \
     the next stage starts when the stage's broadcast is over.",
);
/// One stage's keys.
pub(crate) const STAGE: &[Key; 7] = &[
    STAGE_NAME,
    STAGE_RELAYS,
    STAGE_CLIENTS,
    STAGE_LABELS,
    STAGE_PERCENT,
    STAGE_SEED,
    STAGE_GATE,
];
/// The keys of which a stage names at least one.
pub(crate) const STAGE_TARGETS: &[&str] = &["relays", "clients", "labels", "percent"];

/// The top-level keys.
pub(crate) const TOP: &[Key; 10] = &[
    NAME,
    DESCRIPTION,
    key("artifact", true, Kind::Map(ARTIFACT), "What to distribute."),
    key(
        "targets",
        true,
        Kind::MapOfLists(TARGETS),
        "To whom: at least one relay or group.",
    ),
    key(
        "schedule",
        true,
        Kind::Map(SCHEDULE),
        "When: the start, the deadline, the sites' zone and daily window.",
    ),
    key(
        "transports",
        true,
        Kind::Map(TRANSPORTS),
        "The plugins that carry rounds and deltas.",
    ),
    key(
        "rate",
        false,
        Kind::Text,
        "Broadcast pacing: 20Mbit/s, 800kbit/s, 1Gbit/s (or Mbps ...).",
    ),
    key(
        "policies",
        false,
        Kind::Map(POLICIES),
        "Rhai scripts, relative to the workflow's folder.",
    ),
    key(
        "stages",
        false,
        Kind::List {
            keys: STAGE,
            any_of: STAGE_TARGETS,
        },
        "A phased rollout: the broadcast goes to one stage at a time, in order, and the \
         advance policy decides after each stage's gate whether the next one starts. \
         Without stages every target installs at once.",
    ),
    key(
        "steps",
        true,
        Kind::Steps,
        "The ordered steps: register, broadcast, audit, delta, disconnect; each at most \
         once, in that order. Write a step as its name (- audit) or as a mapping of its \
         name to its options (- broadcast: { rounds: 3 }).",
    ),
];

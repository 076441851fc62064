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
    /// A list of text values (`fields::string_list`).
    TextList,
    /// A mapping of these keys, no others.
    Map(&'static [Key]),
    /// A mapping of these keys, of which at least one holds a non-empty
    /// list (`targets`).
    MapOfLists(&'static [Key]),
    /// The list of steps ([`crate::steps`] knows each step's options).
    Steps,
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
/// `schedule`'s keys.
pub(crate) const SCHEDULE: &[Key] = &[START, DEADLINE, TIME_ZONE, WINDOW];
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
/// `policies`'s keys.
pub(crate) const POLICIES: &[Key] = &[RETRY, RESTRICT, DISCONNECT, BROADCAST_POLICY];

/// The top-level keys.
pub(crate) const TOP: &[Key; 9] = &[
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
        "steps",
        true,
        Kind::Steps,
        "The ordered steps: register, broadcast, audit, delta, disconnect; each at most \
         once, in that order. Write a step as its name (- audit) or as a mapping of its \
         name to its options (- broadcast: { rounds: 3 }).",
    ),
];

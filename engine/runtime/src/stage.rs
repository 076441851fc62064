//! Who is in which stage of a phased rollout, and the facts the advance
//! policy is asked with. Pure: the fleet, the stages and the counts come
//! in as arguments; time is an argument.
//!
//! Membership, stage by stage in the workflow's order: the clients behind
//! the stage's relays, the clients it names and the clients whose labels
//! hold all of the stage's `labels` (not in an earlier stage), then, with `percent: N`, N % (rounded up) of the clients left over, in
//! the order of their rank. A client's rank is a hash of the stage's seed
//! and the client's name, so the same seed draws the same clients whatever
//! the order the fleet is listed in, and a client that joins the fleet
//! later takes its own place without reshuffling the others. Changing
//! [`rank`] changes which clients every existing workflow canaries: do not.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use haifu_core::{Labels, matches_all};
use haifu_policy::{FailureThreshold, StageFacts, StageSummary};
use haifu_spec::{FailureLimit, Stage};

/// Each client's stage, and each stage's clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// Per stage, its clients, sorted by name.
    pub stages: Vec<Vec<String>>,
    /// Clients in no stage (the last stage was not `percent: 100`), sorted.
    pub outside: Vec<String>,
    /// Clients a stage names that are not in the fleet: `(stage, client)`.
    pub unknown: Vec<(usize, String)>,
}

/// One client of the fleet, as membership sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    /// Its name.
    pub client: String,
    /// Its relay.
    pub relay: String,
    /// Its labels (empty when it reported none).
    pub labels: Labels,
}

impl Member {
    /// A client without labels.
    pub fn new(client: impl Into<String>, relay: impl Into<String>) -> Member {
        Member {
            client: client.into(),
            relay: relay.into(),
            labels: Labels::new(),
        }
    }
}

impl Membership {
    /// Assigns `fleet`'s clients (a client listed twice counts once, as
    /// first listed) to `stages`.
    pub fn assign(fleet: &[Member], stages: &[Stage]) -> Membership {
        let mut relay_of: BTreeMap<&str, &str> = BTreeMap::new();
        let mut labels_of: BTreeMap<&str, &Labels> = BTreeMap::new();
        for m in fleet {
            relay_of
                .entry(m.client.as_str())
                .or_insert(m.relay.as_str());
            labels_of.entry(m.client.as_str()).or_insert(&m.labels);
        }
        let mut left: BTreeSet<&str> = relay_of.keys().copied().collect();
        let mut out = Membership::default();
        for (i, stage) in stages.iter().enumerate() {
            let mut members: Vec<&str> = left
                .iter()
                .copied()
                .filter(|c| {
                    stage
                        .relays
                        .iter()
                        .any(|r| Some(&r.as_str()) == relay_of.get(c))
                        || stage.clients.iter().any(|n| n == c)
                        || labels_of
                            .get(c)
                            .is_some_and(|l| matches_all(l, &stage.labels))
                })
                .collect();
            for named in &stage.clients {
                if !relay_of.contains_key(named.as_str()) {
                    out.unknown.push((i, named.clone()));
                }
            }
            for c in &members {
                left.remove(c);
            }
            if let Some(percent) = stage.percent {
                let mut ranked: Vec<(u64, &str)> =
                    left.iter().map(|c| (rank(stage.seed, c), *c)).collect();
                ranked.sort_unstable();
                let n = (left.len() as u64 * u64::from(percent)).div_ceil(100);
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                for (_, c) in ranked.into_iter().take(n) {
                    left.remove(c);
                    members.push(c);
                }
            }
            members.sort_unstable();
            out.stages
                .push(members.into_iter().map(str::to_owned).collect());
        }
        out.outside = left.into_iter().map(str::to_owned).collect();
        out
    }

    /// The stage of `client` (from 0), if any.
    pub fn stage_of(&self, client: &str) -> Option<usize> {
        self.stages
            .iter()
            .position(|s| s.binary_search_by(|c| c.as_str().cmp(client)).is_ok())
    }
}

/// A share of a modelled fleet that carries one label (`haifu simulate
/// --label-share ring=canary:10%`), so that stages naming labels find
/// clients in a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelShare {
    /// The label's key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// The share of the fleet, 0 to 1 (rounded up to whole clients).
    pub share: f64,
}

/// Gives each share's label to its share of `fleet`, drawn by [`rank`]
/// of `seed` and the label (the same seed and fleet, the same clients).
/// Shares of one key are drawn from the clients that do not carry that
/// key yet, so `ring=canary:5%` and `ring=early:20%` never overlap.
pub fn share_labels(fleet: &mut [Member], shares: &[LabelShare], seed: u64) {
    for share in shares {
        let salt = rank(seed, &format!("{}={}", share.key, share.value));
        let mut free: Vec<(u64, usize)> = fleet
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.labels.contains_key(&share.key))
            .map(|(i, m)| (rank(salt, &m.client), i))
            .collect();
        free.sort_unstable();
        let want = (fleet.len() as f64 * share.share.clamp(0.0, 1.0)).ceil();
        // Whole clients, at most the fleet: the cast cannot wrap.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let want = want as usize;
        for (_, i) in free.into_iter().take(want) {
            if let Some(m) = fleet.get_mut(i) {
                m.labels.insert(share.key.clone(), share.value.clone());
            }
        }
    }
}

/// A client's place in a seed's draw: FNV-1a of the seed and the name,
/// finished with SplitMix64's mixer so that similar names spread.
pub fn rank(seed: u64, client: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes().iter().chain(client.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// What is known of one stage at one moment, as counted by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StageCount {
    /// Clients in the stage.
    pub targeted: u64,
    /// Installed and reported success.
    pub delivered: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
}

impl StageCount {
    /// Failed clients.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    fn summary(&self, name: &str) -> StageSummary {
        StageSummary {
            name: name.to_owned(),
            targeted: self.targeted,
            delivered: self.delivered,
            failed: self.failed(),
        }
    }
}

/// The facts `advance(ctx)` is asked with for stage `index` (from 0) of
/// `stages`: its count, its times, its gate, and the earlier stages'
/// counts (`previous`, in order).
pub fn facts(
    stages: &[Stage],
    index: usize,
    count: &StageCount,
    previous: &[StageCount],
    in_stage: Duration,
    soaked: Duration,
) -> Option<StageFacts> {
    let stage = stages.get(index)?;
    Some(StageFacts {
        stage: u32::try_from(index + 1).unwrap_or(u32::MAX),
        stages: u32::try_from(stages.len()).unwrap_or(u32::MAX),
        name: stage.name.clone(),
        targeted: count.targeted,
        delivered: count.delivered,
        failed: count.failed(),
        failures: count
            .failures
            .iter()
            .map(|(r, n)| (r.clone(), *n))
            .collect(),
        in_stage,
        soaked,
        soak: stage.gate.soak,
        min_success: stage.gate.min_success,
        max_failures: stage.gate.max_failures.map(|l| match l {
            FailureLimit::Percent(p) => FailureThreshold::Percent(p),
            FailureLimit::Count(n) => FailureThreshold::Count(n),
        }),
        previous: stages
            .iter()
            .zip(previous)
            .map(|(s, c)| c.summary(&s.name))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use haifu_policy::{PolicySet, follow_gate};

    fn stages(yaml: &str) -> Vec<Stage> {
        let text = format!(
            "name: t\nartifact: {{ name: app, version: 1.0.0, path: a.tar }}\n\
             targets: {{ relays: [r1, r2, r3] }}\n\
             schedule: {{ start: 2026-12-01T00:00:00Z, deadline: 72h }}\n\
             transports: {{ broadcast: multicast }}\n{yaml}\
             steps:\n  - broadcast: {{ rounds: 1 }}\n"
        );
        haifu_spec::check_text(std::path::Path::new("t.yaml"), &text)
            .unwrap()
            .stages
    }

    fn fleet(n: u32) -> Vec<Member> {
        (0..n)
            .map(|i| Member::new(format!("pos-{i:04}"), format!("r{}", i % 3 + 1)))
            .collect()
    }

    const THREE: &str = "stages:\n  - relays: [r1]\n  - percent: 50\n  - percent: 100\n";

    #[test]
    fn one_relay_then_half_then_all() {
        let m = Membership::assign(&fleet(300), &stages(THREE));
        let sizes: Vec<usize> = m.stages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 100]);
        assert!(m.stages[0].iter().all(|c| {
            let i: u32 = c[4..].parse().unwrap();
            i.is_multiple_of(3)
        }));
        assert!(m.outside.is_empty() && m.unknown.is_empty());
        let all: BTreeSet<&String> = m.stages.iter().flatten().collect();
        assert_eq!(all.len(), 300, "every client in exactly one stage");
        assert_eq!(m.stage_of("pos-0000"), Some(0));
    }

    #[test]
    fn percentages_round_up_and_leave_the_rest_outside() {
        let s = stages("stages:\n  - percent: 1\n  - percent: 10\n");
        let m = Membership::assign(&fleet(7), &s);
        assert_eq!(m.stages[0].len(), 1, "1% of 7 rounds up to one client");
        assert_eq!(m.stages[1].len(), 1, "10% of the 6 left rounds up to one");
        assert_eq!(m.outside.len(), 5);
        assert_eq!(m.stage_of(&m.outside[0]), None);
    }

    #[test]
    fn the_draw_depends_on_the_seed_and_names_not_on_the_order() {
        let s = stages("stages:\n  - percent: 10\n  - percent: 100\n");
        let f = fleet(1000);
        let a = Membership::assign(&f, &s);
        let mut reversed = f.clone();
        reversed.reverse();
        assert_eq!(a, Membership::assign(&reversed, &s), "order of the fleet");
        let mut grown = f.clone();
        grown.push(Member::new("pos-9999", "r1"));
        let b = Membership::assign(&grown, &s);
        let kept = a.stages[0]
            .iter()
            .filter(|c| b.stages[0].contains(c))
            .count();
        assert!(
            kept >= 99,
            "a newcomer reshuffles nobody: {kept} of 100 kept"
        );
        let other = stages("stages:\n  - percent: 10\n    seed: 1\n  - percent: 100\n");
        let c = Membership::assign(&f, &other);
        assert_eq!(c.stages[0].len(), 100);
        assert_ne!(a.stages[0], c.stages[0], "another seed, another draw");
        // Pinned: the draw is part of what an operator relies on.
        assert_eq!(rank(0, "pos-0000"), rank(0, "pos-0000"));
        assert_ne!(rank(0, "pos-0000"), rank(1, "pos-0000"));
    }

    #[test]
    fn named_clients_join_their_stage_and_unknown_names_are_reported() {
        let s = stages(
            "stages:\n  - clients: [pos-0001, pos-0404]\n  - relays: [r2]\n    percent: 100\n",
        );
        let m = Membership::assign(&fleet(10), &s);
        assert_eq!(m.stages[0], ["pos-0001"]);
        assert_eq!(m.stages[1].len(), 9, "r2's clients and then everyone left");
        assert_eq!(m.unknown, [(0, "pos-0404".to_string())]);
    }

    #[test]
    fn labels_name_a_stage_when_every_pair_matches() {
        let s = stages(
            "stages:\n  - labels: { ring: canary }\n  - labels: { ring: early, site: s1 }\n  - percent: 100\n",
        );
        let mut f = fleet(6);
        let label = |m: &mut Member, pairs: &[(&str, &str)]| {
            m.labels = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        };
        label(&mut f[1], &[("ring", "canary"), ("site", "s2")]);
        label(&mut f[2], &[("ring", "early"), ("site", "s1")]);
        label(&mut f[3], &[("ring", "early")]);
        label(&mut f[4], &[("ring", "canary")]);
        let m = Membership::assign(&f, &s);
        assert_eq!(m.stages[0], ["pos-0001", "pos-0004"]);
        assert_eq!(m.stages[1], ["pos-0002"], "both pairs must match");
        assert_eq!(m.stages[2], ["pos-0000", "pos-0003", "pos-0005"]);
        assert!(m.outside.is_empty());
    }

    #[test]
    fn label_shares_are_drawn_by_the_seed_and_never_overlap_on_a_key() {
        let share = |v: &str, p: f64| LabelShare {
            key: "ring".into(),
            value: v.into(),
            share: p,
        };
        let shares = [share("canary", 0.05), share("early", 0.2)];
        let mut f = fleet(100);
        share_labels(&mut f, &shares, 1);
        let count = |f: &[Member], v: &str| {
            f.iter()
                .filter(|m| m.labels.get("ring").map(String::as_str) == Some(v))
                .count()
        };
        let with = |f: &[Member]| f.iter().filter(|m| !m.labels.is_empty()).count();
        assert_eq!((count(&f, "canary"), count(&f, "early")), (5, 20));
        assert_eq!(with(&f), 25);
        let mut again = fleet(100);
        share_labels(&mut again, &shares, 1);
        assert_eq!(f, again, "the same seed, the same clients");
        let s = stages("stages:\n  - labels: { ring: canary }\n  - percent: 100\n");
        assert_eq!(Membership::assign(&f, &s).stages[0].len(), 5);
    }

    /// The gate on virtual time: a stage with failures above its
    /// threshold pauses during its soak; a healthy one waits the soak out,
    /// to the second, then proceeds.
    #[test]
    fn a_stage_soaks_in_virtual_time_and_pauses_on_failures() {
        let s = stages(
            "stages:\n  - relays: [r1]\n    gate: { soak: 30m, min_success: 95%, max_failures: 2% }\n  - percent: 100\n",
        );
        let policies = PolicySet::defaults();
        let mut count = StageCount {
            targeted: 100,
            delivered: 99,
            failures: BTreeMap::new(),
        };
        let mut at = Duration::ZERO;
        let mut asked = Vec::new();
        loop {
            let f = facts(&s, 0, &count, &[], at + Duration::from_secs(120), at).unwrap();
            let d = policies.advance(&f).value;
            assert_eq!(d, follow_gate(&f));
            asked.push((at.as_secs(), d.word()));
            match d {
                haifu_policy::Advance::Wait { wait, .. } => at += wait,
                _ => break,
            }
        }
        assert_eq!(asked, [(0, "wait"), (1800, "proceed")]);

        count.failures.insert("post-install".into(), 3);
        count.delivered = 90;
        let f = facts(
            &s,
            0,
            &count,
            &[],
            Duration::from_secs(300),
            Duration::from_secs(60),
        )
        .unwrap();
        let d = policies.advance(&f).value;
        assert_eq!(d.word(), "pause", "{d:?}");
        let next = facts(
            &s,
            1,
            &StageCount::default(),
            &[count.clone()],
            Duration::ZERO,
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(next.previous[0].failed, 3);
        assert_eq!((next.stage, next.stages), (2, 2));
    }
}

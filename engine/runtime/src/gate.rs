//! The service gate (paragraph 0013): may client C use service S?
//!
//! The answer comes from the restriction policy, fed with the ledger's facts
//! about the client (its version, last contact, whether it was cut off) and
//! the service (the version it appeared in). The same call serves
//! `haifu gate` and the master's HTTP API, and so does the choice of the
//! restriction policy ([`RestrictSource`]).

use haifu_ledger::{ClientRow, Ledger, LedgerError};
use haifu_policy::{ClientFacts, Decision, PolicySet, ServiceFacts};
use jiff::Timestamp;

/// Where the gate's restriction policy comes from: the workflow of the
/// newest run, and the `policies.restrict` script it names (if it still
/// validates and names one). The one place the CLI and the master's API
/// choose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestrictSource {
    /// The newest run's workflow, if there is a run.
    pub workflow: Option<std::path::PathBuf>,
    /// Its restriction script; `None`: the built-in default.
    pub script: Option<std::path::PathBuf>,
}

impl RestrictSource {
    /// The source of the newest run in `ledger`.
    pub fn newest(ledger: &Ledger) -> Result<Self, LedgerError> {
        let workflow = ledger
            .runs()?
            .first()
            .map(|r| std::path::PathBuf::from(&r.workflow));
        let script = workflow.as_deref().and_then(|w| {
            haifu_spec::load_and_validate(w)
                .ok()
                .and_then(|plan| plan.policies.restrict.map(|p| p.value))
        });
        Ok(Self { workflow, script })
    }
}

/// The policies the gate answers with when `script` is the restriction
/// script (`None`: every decision its safe default).
///
/// # Errors
/// The script cannot be read or compiled, one error each.
pub fn restrict_policies(
    script: Option<std::path::PathBuf>,
) -> Result<PolicySet, Vec<haifu_policy::PolicyError>> {
    match script {
        Some(p) => PolicySet::load(&haifu_policy::PolicyPaths {
            restrict: Some(p),
            ..haifu_policy::PolicyPaths::default()
        }),
        None => Ok(PolicySet::defaults()),
    }
}

/// The gate's answer, and whether the policy's safe default was used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GateAnswer {
    /// Allowed or not.
    pub allow: bool,
    /// Why.
    pub reason: String,
    /// Set when the restriction policy failed and its safe default answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl From<Decision> for GateAnswer {
    fn from(d: Decision) -> Self {
        Self {
            allow: d.allow,
            reason: d.reason,
            fallback: None,
        }
    }
}

fn deny(reason: String) -> GateAnswer {
    GateAnswer {
        allow: false,
        reason,
        fallback: None,
    }
}

/// The registered versions of one artifact, to say how far behind a client
/// is. Read once, used for many clients.
#[derive(Debug, Clone)]
pub struct RegisteredVersions(Vec<semver::Version>);

impl RegisteredVersions {
    /// The versions of `artifact` in the ledger.
    pub fn of(ledger: &Ledger, artifact: &str) -> Result<Self, LedgerError> {
        Ok(Self(
            ledger
                .versions(Some(artifact))?
                .iter()
                .filter_map(|v| semver::Version::parse(&v.version).ok())
                .collect(),
        ))
    }

    /// The policy facts of a fleet member: its version as the ledger knows
    /// it, the newest registered version (`fallback_newest` if none is),
    /// how many registered versions are newer than its own (all of them
    /// when its version is unknown), its last contact and `state`.
    pub fn client_facts(
        &self,
        c: &ClientRow,
        fallback_newest: semver::Version,
        state: &str,
    ) -> ClientFacts {
        let version = c
            .version
            .as_deref()
            .and_then(|v| semver::Version::parse(v).ok());
        let behind = match &version {
            Some(v) => self.0.iter().filter(|r| *r > v).count(),
            None => self.0.len(),
        };
        ClientFacts {
            id: c.id.clone(),
            version,
            newest: self.0.iter().max().cloned().unwrap_or(fallback_newest),
            behind: u32::try_from(behind).unwrap_or(u32::MAX),
            last_contact: c.last_contact.as_deref().and_then(|t| t.parse().ok()),
            state: state.to_owned(),
        }
    }
}

/// Answers "may `client` use `service`?" at `now`.
///
/// Unknown clients, cut-off clients and undeclared services are denied with a
/// reason before any policy runs: the gate never allows what it cannot name.
pub fn decide(
    ledger: &Ledger,
    policies: &PolicySet,
    client: &str,
    service: &str,
    now: Timestamp,
) -> Result<GateAnswer, LedgerError> {
    let Some(c) = ledger.client(client)? else {
        return Ok(deny(format!("unknown client {client:?}")));
    };
    if let Some(why) = &c.denied_reason {
        return Ok(deny(format!("client {client} is disconnected: {why}")));
    }
    let Some(haifu_ledger::ServiceRow { artifact, since }) = ledger.service(service)? else {
        return Ok(deny(format!("unknown service {service:?}")));
    };
    let Ok(since) = semver::Version::parse(&since) else {
        return Ok(deny(format!(
            "service {service} has an invalid version {since:?} on record"
        )));
    };
    let registered = RegisteredVersions::of(ledger, &artifact)?;
    let facts = registered.client_facts(&c, since.clone(), "connected");
    let outcome = policies.allow(
        &facts,
        &ServiceFacts {
            name: service.to_owned(),
            since,
        },
        now,
    );
    let mut answer = GateAnswer::from(outcome.value);
    answer.fallback = outcome.fallback.map(|f| f.to_string());
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_cut_off_clients_and_unknown_services_are_denied() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        let p = PolicySet::defaults();
        let now = Timestamp::now();
        let a = decide(&l, &p, "ghost", "refund", now).unwrap();
        assert!(!a.allow && a.reason.contains("unknown client"), "{a:?}");
        l.touch_client(
            "pos-1",
            Some("east"),
            Some("app"),
            Some("2.3.0"),
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        let a = decide(&l, &p, "pos-1", "refund", now).unwrap();
        assert!(!a.allow && a.reason.contains("unknown service"), "{a:?}");
        l.set_service("refund", "app", "2.4.0").unwrap();
        let a = decide(&l, &p, "pos-1", "refund", now).unwrap();
        assert!(!a.allow, "2.3.0 lacks a 2.4.0 service: {a:?}");
        l.touch_client("pos-1", None, None, Some("2.4.0"), "2026-01-02T00:00:00Z")
            .unwrap();
        let a = decide(&l, &p, "pos-1", "refund", now).unwrap();
        assert!(a.allow, "{a:?}");
    }
}

//! `haifu demo`: the whole method on this machine's loopback, with real
//! processes, the real plugins, real certificates and the embedded ledger in
//! a temporary folder.

mod artifact;
mod fleet;
mod procs;
mod report;
mod stages;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::home::Home;
use fleet::{Fleet, Role};
use report::{Gate, Report};

#[derive(Debug, clap::Args)]
#[command(after_help = "What it does, in order (steps 100-111 of the method):
  1. makes a fleet CA and certificates, a master key, and a temporary home;
  2. generates a program image (pos-app 2.3.0) and its next release (2.4.0),
     registers both, and installs 2.3.0 on every client;
  3. starts a master, R relays and N clients as separate `haifu` processes
     (QUIC with mutual TLS through the quic plugin, broadcast through the
     multicast plugin on 127.0.0.1); the clients drop --loss % of the
     datagrams they receive on average (each between a quarter of and 1.75
     times that);
  4. takes --offline % of the clients offline: half come back after round 1,
     the rest (stragglers) only after the last round;
  5. runs the rollout: up to 3 broadcast rounds 2 s apart, the audit, deltas
     for the stragglers as they boot, and at the deadline the cut-off of
     whoever is still behind (policies/cut-off-at-deadline.rhai); --broken
     clients are kept broken on purpose: one whose post-install check
     fails reports the failure and is recorded as failed with its reason,
     one that never comes back is cut off;
  6. asks the master's HTTP gate whether an old and a new client may use a
     service that 2.4.0 brings, before and after the stragglers update;
  7. checks every updated client's install byte for byte, prints the report
     and stops every process.

With --stages the same fleet is rolled out in stages instead (the
workflow's `stages:` and policies/advance.rhai): canary = relay-1's
clients (soak 3 s, max_failures 0), then half of the rest (soak 2 s), then
the rest. One canary client's post-install check refuses 2.4.0 until a fix
marker exists: it reports the failure, the advance policy pauses the run
before any other stage starts, and the demo checks on disk that every
client of the later stages still runs 2.3.0. It then plays the operator:
writes the fix, runs `haifu fleet readmit CLIENT` and `haifu run resume
RUN`; the stages proceed, the readmitted client installs 2.4.0 in a
later round and every client ends on 2.4.0. The report adds the audit's per-stage
table (targeted, delivered, failed, pending, each decision and its
reason). --offline and --broken do not apply.

Everything runs under a new folder in the temporary directory, removed at
the end unless --keep (or the demo fails): it holds every process's config
and log, the ledger and the clients' install roots.

Examples:
  haifu demo
  haifu demo --clients 30 --relays 3 --loss 5 --offline 20 --size 32
  haifu demo --json | jq .delivered_by_round
  haifu demo --stages             # canary, pause on a failure, fix, resume (well under a minute)
  haifu demo --stages --json | jq .stages
  haifu demo --deadline 60        # a slow or busy machine: more time before the cut-off")]
pub(crate) struct Args {
    /// Clients in the fleet (2-200).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(2..=200))]
    clients: u32,
    /// Relays (1-16); clients are spread over them.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    relays: u32,
    /// Mean percent of the broadcast datagrams a client drops (0-50).
    #[arg(long, default_value_t = 10.0, value_name = "PCT")]
    loss: f64,
    /// Percent of the clients offline during the broadcast (0-90).
    #[arg(long, default_value_t = 25.0, value_name = "PCT")]
    offline: f64,
    /// Clients kept broken on purpose: every other one's post-install check
    /// fails (recorded as failed), the rest never come back (cut off).
    #[arg(long, default_value_t = 2)]
    broken: u32,
    /// Size of the artifact in MiB (1-512).
    #[arg(long, default_value_t = 8, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..=512))]
    size: u32,
    /// Seed: which clients are offline or broken, the artifact's bytes, the
    /// datagrams each client drops.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds from the run's start to its deadline, when whoever is still
    /// behind is cut off (default: from the size and the clients, 28 s for
    /// the defaults; give more on a slow or busy machine).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(10..=3600))]
    deadline: Option<u64>,
    /// Roll out in stages (canary = relay-1's clients, then half, then the
    /// rest) with a canary client that fails until the operator's fix:
    /// the pause, the readmission and the resume (see below).
    #[arg(long)]
    stages: bool,
    /// Print the report as one JSON object (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Keep the demo's folder and print where it is.
    #[arg(long)]
    keep: bool,
    /// The folder holding the quic and multicast plugins (default: beside
    /// the haifu binary).
    #[arg(long, env = "HAIFU_PLUGINS", value_name = "DIR")]
    plugins: Option<PathBuf>,
}

/// The demo's plan: who plays which part.
pub(crate) struct Plan {
    pub clients: u32,
    pub relays: u32,
    pub loss: f64,
    pub size: usize,
    pub seed: u64,
    pub roles: Vec<(String, Role)>,
}

impl Plan {
    fn new(a: &Args) -> Result<Self> {
        if a.stages {
            return Self::staged(a);
        }
        if !(0.0..=50.0).contains(&a.loss) {
            bail!("--loss {}: give a percentage from 0 to 50", a.loss);
        }
        if !(0.0..=90.0).contains(&a.offline) {
            bail!("--offline {}: give a percentage from 0 to 90", a.offline);
        }
        let offline = ((f64::from(a.clients) * a.offline / 100.0).round()) as u32;
        if a.broken + offline >= a.clients {
            bail!(
                "--broken {} plus {offline} offline ({}% of {}) leave no client online; lower them or add clients",
                a.broken,
                a.offline,
                a.clients
            );
        }
        // Which client plays which part: a shuffle by the seed.
        let mut ids: Vec<String> = (1..=a.clients).map(|n| format!("pos-{n:04}")).collect();
        let mut rng = artifact::Rng::new(a.seed ^ 0x0D15_EA5E);
        for i in (1..ids.len()).rev() {
            ids.swap(i, rng.below(i + 1));
        }
        let late = offline / 2;
        let mut roles: Vec<(String, Role)> = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let i = i as u32;
                let role = if i < a.broken {
                    if i.is_multiple_of(2) {
                        Role::FailingCheck
                    } else {
                        Role::NeverBack
                    }
                } else if i < a.broken + late {
                    Role::Late
                } else if i < a.broken + offline {
                    Role::Straggler
                } else {
                    Role::Online
                };
                (id, role)
            })
            .collect();
        roles.sort();
        Ok(Self {
            clients: a.clients,
            relays: a.relays,
            loss: a.loss,
            size: (a.size as usize) << 20,
            seed: a.seed,
            roles,
        })
    }

    /// `--stages`: everyone online, one client behind relay-1 (the canary)
    /// chosen by the seed refuses 2.4.0 until fixed.
    fn staged(a: &Args) -> Result<Self> {
        if a.relays < 2 {
            bail!(
                "--stages needs at least 2 relays: the canary is relay-1's clients, the later stages the others'"
            );
        }
        if a.clients < 2 * a.relays {
            bail!(
                "--stages needs at least 2 clients per relay ({} for --relays {})",
                2 * a.relays,
                a.relays
            );
        }
        // Client i (in name order) is behind relay-(i % relays + 1).
        let canary = a.clients.div_ceil(a.relays) as usize;
        let mut rng = artifact::Rng::new(a.seed ^ 0x0D15_EA5E);
        let refusing = rng.below(canary) * a.relays as usize;
        let roles = (1..=a.clients)
            .enumerate()
            .map(|(i, n)| {
                let role = if i == refusing {
                    Role::RefusesUntilFixed
                } else {
                    Role::Online
                };
                (format!("pos-{n:04}"), role)
            })
            .collect();
        Ok(Self {
            clients: a.clients,
            relays: a.relays,
            loss: a.loss,
            size: (a.size as usize) << 20,
            seed: a.seed,
            roles,
        })
    }

    pub(crate) fn with(&self, role: Role) -> Vec<&str> {
        self.roles
            .iter()
            .filter(|(_, r)| *r == role)
            .map(|(id, _)| id.as_str())
            .collect()
    }
}

pub(crate) fn run(_home: &Home, args: Args) -> Result<ExitCode> {
    let plan = Plan::new(&args)?;
    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("haifu-demo.")
        .tempdir()
        .context("cannot create the demo's folder")?;
    let say = |what: String| {
        eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    };
    // Ctrl-C (or SIGTERM) stops the demo cleanly: processes stopped, folder
    // removed unless --keep.
    let stop = haifu_fleet::Shutdown::on_signals().map_err(|e| anyhow::anyhow!("{e}"))?;
    let outcome = if args.stages {
        stages::drive(&plan, &args, work.path(), &say, &stop)
    } else {
        drive(&plan, &args, work.path(), &say, &stop)
    };
    let keep = args.keep || (outcome.is_err() && !stop.is_set());
    let where_ = if keep {
        let dir = work.keep();
        say(format!(
            "the demo's folder is kept: {} (logs: *.log)",
            dir.display()
        ));
        Some(dir)
    } else {
        None
    };
    let mut report = outcome?;
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.folder = where_;
    if args.json {
        crate::output::json(&report)?;
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The demo from set-up to report; the processes stop when it returns.
fn drive(
    plan: &Plan,
    args: &Args,
    dir: &Path,
    say: &dyn Fn(String),
    stop: &haifu_fleet::Shutdown,
) -> Result<Report> {
    let mut f = Fleet::set_up(plan, args.plugins.as_deref(), dir)?;
    if let Some(d) = args.deadline {
        f.deadline_secs = d;
    }
    say(format!(
        "set up in {}: fleet CA, {} certificates, pos-app 2.3.0 and 2.4.0 registered ({} each), 2.3.0 installed on {} clients",
        dir.display(),
        plan.clients + plan.relays + 1,
        crate::output::bytes(f.new_len),
        plan.clients
    ));
    f.start_daemons(plan)?;
    say(format!(
        "master, {} relays and {} clients running as processes; every client reported 2.3.0",
        plan.relays, plan.clients
    ));
    let offline: Vec<&str> = [Role::Late, Role::Straggler, Role::NeverBack]
        .iter()
        .flat_map(|r| plan.with(*r))
        .collect();
    for id in &offline {
        f.procs.stop(id);
    }
    say(format!(
        "{} client{} go{} offline: {}",
        offline.len(),
        if offline.len() == 1 { "" } else { "s" },
        if offline.len() == 1 { "es" } else { "" },
        offline.join(", ")
    ));
    let run = f.start_run(plan.relays, None)?;
    say(format!(
        "run {run}: pos-app 2.3.0 -> 2.4.0, up to 3 rounds 2 s apart, deadline in {} s",
        f.deadline_secs
    ));

    let mut gates: Vec<Gate> = Vec::new();
    let mut rounds_seen = 0usize;
    let mut late_started = false;
    let mut stragglers_started = false;
    let mut flipped = false;
    let limit = Instant::now() + Duration::from_secs(f.deadline_secs + 60);
    loop {
        if stop.is_set() {
            bail!("interrupted");
        }
        f.check_daemons(plan)?;
        let audit = f.audit(run)?;
        let by_round = report::delivered_by_round(&audit);
        let sent = audit.traffic.multicast_by_round.len();
        if sent > rounds_seen {
            rounds_seen = sent;
            say(format!(
                "round {sent} sent ({} multicast so far); delivered by round: {by_round:?}",
                crate::output::bytes(audit.traffic.multicast_bytes)
            ));
        }
        if sent >= 1 && !late_started {
            late_started = true;
            let late = plan.with(Role::Late);
            for id in &late {
                f.procs.start("client", id)?;
            }
            if !late.is_empty() {
                say(format!(
                    "back online for the next round: {}",
                    late.join(", ")
                ));
            }
        }
        let pending: usize = audit.relays.iter().map(|r| r.pending.len()).sum();
        if sent >= 1 && pending == 0 && !stragglers_started {
            stragglers_started = true;
            let undelivered: Vec<String> = audit
                .relays
                .iter()
                .flat_map(|r| r.undelivered.iter().cloned())
                .collect();
            say(format!(
                "audit after round {sent}: {} delivered, undelivered: {}",
                by_round.iter().sum::<usize>(),
                undelivered.join(", ")
            ));
            let stragglers = plan.with(Role::Straggler);
            if let Some(old) = stragglers.first() {
                gates.push(f.gate(old, "before its update")?);
            }
            if let Some(new) = plan.with(Role::Online).first() {
                gates.push(f.gate(new, "delivered by broadcast")?);
            }
            for id in &stragglers {
                f.procs.start("client", id)?;
            }
            if !stragglers.is_empty() {
                say(format!(
                    "stragglers boot and ask the master: {}",
                    stragglers.join(", ")
                ));
            }
        }
        let by_delta: Vec<String> = audit.relays.iter().flat_map(|r| r.delta.clone()).collect();
        if stragglers_started && !flipped {
            let stragglers = plan.with(Role::Straggler);
            if let Some(first) = stragglers.first()
                && by_delta.iter().any(|c| c == first)
            {
                flipped = true;
                say(format!(
                    "{first} installed 2.4.0 from a delta ({} of deltas sent so far)",
                    crate::output::bytes(audit.traffic.delta_bytes)
                ));
                gates.push(f.gate(first, "after its delta")?);
            }
        }
        if audit.run.status != haifu_ledger::RunStatus::Running {
            let cut: Vec<String> = audit
                .relays
                .iter()
                .flat_map(|r| r.disconnected.iter().map(|(c, _)| c.clone()))
                .collect();
            say(format!(
                "deadline: the run ends; disconnected: {}",
                if cut.is_empty() {
                    "nobody".to_owned()
                } else {
                    cut.join(", ")
                }
            ));
            if let Some(c) = cut.first() {
                gates.push(f.gate(c, "cut off")?);
            }
            return f.report(plan, run, audit, gates);
        }
        if Instant::now() > limit {
            bail!("run {run} did not end within 60 s after its deadline");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

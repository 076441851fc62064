#!/usr/bin/env python3
"""The LAN race's driver (bench/lan-race.sh checks the tools, builds haifu,
brings the LAN up with ../shared/bench/lan.sh and calls this).

The LAN: namespace hf0 sends (10.77.0.1), hf1..hfN receive (10.77.0.2..),
all on one bridge; `lan.sh rate` caps hf0's link with tbf, `lan.sh loss`
drops a share of what each receiver hears (independently per receiver).

haifu: master and relay in hf0 (the master on hf0's loopback, the relay's
clients and multicast on 10.77.0.1), one `haifu client` per receiver
namespace joined on its own address. A fresh fleet per run, as
bench/fleet.sh makes it (CA, certificates, configs, the same retry policy
and workflow). uftp: `uftp` in hf0, one `uftpd` per receiver namespace.

Per run it measures:
  time      haifu: the master's first event="round-started" to the last
            client's "installed; completion sent" (the clients' own
            completions, whatever the rounds' planned length; includes the
            relay's fetch of the artifact from the master); uftp: the wall
            time of the uftp process (announce, registration, data, NAK
            repairs, completion)
  wire      hf0's eth0 tx_bytes (and packets) over the run, / the artifact
            size: what went on the sender's link after tbf, both tools
            counted the same way (veth counts the 14-byte Ethernet header;
            no preamble, FCS or inter-frame gap); tbf's drops beside it
  rounds    haifu: the relay's "round sent" lines; "round 1" = the clients
            that logged "all blocks decoded" before round 2's first datagram
            (all that decoded, when there was one round)
  CPU       utime+stime (/proc/PID/stat) of each haifu client over the run
            and of each uftpd over its life; the relay's and uftp's too;
            "CPU s per GiB" = the receivers' CPU seconds / GiB delivered
  rate      the relay's achieved rate per round: bytes * 8 / elapsed_ms of
            its "round sent" line (UDP payload, as its pacer counts)
Before each run it waits (up to --quiet-wait s) for idle CPUs, records the
share of the CPUs other processes took during the run, and runs again (up
to --attempts runs in all) a run they disturbed by more than 10%.

A dead receiver (--dead): the same haifu run with the last client
SIGSTOPped from before the run starts to its end; compared with the
matching runs without it, over the same N-1 other clients.

Prints a table of medians on stdout, progress on stderr, and writes --json.
"""

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Only fleet_bench's pure helpers (log parsing, artifact, CPU idleness).
from fleet_bench import (  # noqa: E402
    MIB, cpu_busy, fields, lines_with, log, make_artifact, sha256, tails, ts, wait_for, wait_quiet,
)

GIB = 1 << 30
SENDER_NS, SENDER_IP, SENDER_IF = "hf0", "10.77.0.1", "eth0"
SEED = 20260101  # fleet_bench's seed: the same bytes at the same size
CLK = os.sysconf("SC_CLK_TCK")


def receiver_ns(i):
    return f"hf{i}"


def receiver_ip(i):
    return f"10.77.0.{i + 1}"


def in_ns(ns, cmd):
    return ["ip", "netns", "exec", ns, *cmd]


class Procs:
    """Every process started here (pids also appended to the pidfile, for
    the shell's trap); `ip netns exec` execs its command, so a pid is the
    daemon's own."""

    def __init__(self, pidfile):
        self.pidfile, self.live = pidfile, []

    def start(self, cmd, logfile, env, cwd):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(logfile, "ab"),
                             stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        self.live.append(p)
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write(f"{p.pid}\n")
        return p

    def run(self, cmd, timeout, **kw):
        """A command run to its end (`haifu run`, `uftp`), in the pidfile
        too while it runs; killed if this driver is interrupted."""
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write(f"{p.pid}\n")
        with p:
            try:
                out, err = p.communicate(timeout=timeout)
            except BaseException:
                p.kill()
                raise
        return subprocess.CompletedProcess(cmd, p.returncode, out, err)

    def stop_all(self, grace=15.0):
        for p in self.live:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.send_signal(signal.SIGCONT)  # a stopped (dead) receiver too
        end = time.monotonic() + grace
        for p in self.live:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.live.clear()


def proc_cpu(pid):
    """utime + stime of a process (all its threads), in seconds; None once
    it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(rest[11]) + int(rest[12])) / CLK


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ns_read(ns, path):
    return subprocess.run(in_ns(ns, ["cat", path]), capture_output=True, text=True, check=True).stdout


def link_stats():
    """What hf0's eth0 put on the wire so far, and tbf's counters on it."""
    st = f"/sys/class/net/{SENDER_IF}/statistics"
    out = subprocess.run(in_ns(SENDER_NS, ["sh", "-c", f"cat {st}/tx_bytes {st}/tx_packets"]),
                         capture_output=True, text=True, check=True).stdout.split()
    q = subprocess.run(in_ns(SENDER_NS, ["tc", "-s", "-j", "qdisc", "show", "dev", SENDER_IF]),
                       capture_output=True, text=True, check=True).stdout
    drops = sum(x.get("drops", 0) for x in json.loads(q or "[]") if x.get("kind") == "tbf")
    return {"tx_bytes": int(out[0]), "tx_packets": int(out[1]), "tbf_drops": drops}


def link_delta(a, b):
    return {k: b[k] - a[k] for k in a}


def udp_drops(n):
    """RcvbufErrors per receiver namespace (/proc/net/snmp is per namespace)."""
    out = []
    for i in range(1, n + 1):
        rows = [l.split()[1:] for l in ns_read(receiver_ns(i), "/proc/net/snmp").splitlines()
                if l.startswith("Udp:")]
        out.append(int(dict(zip(rows[0], rows[1]))["RcvbufErrors"]))
    return out


def parse_rate(r):
    """tc's rate ("100mbit", "1gbit") in Mbit/s."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(k|m|g)bit", r.lower())
    if not m:
        raise SystemExit(f"lan_race: rate {r!r} is not <N>kbit, <N>mbit or <N>gbit")
    return float(m.group(1)) * {"k": 1e-3, "m": 1.0, "g": 1e3}[m.group(2)]


def prune(folder):
    """Drops a run's trees and data (hundreds of MiB), keeps logs and configs."""
    for p in Path(folder).iterdir() if Path(folder).exists() else []:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.suffix not in (".log", ".yaml", ".rhai", ".json"):
            p.unlink(missing_ok=True)


def irq_cpu():
    """CPU-seconds the machine spent in hard and soft interrupts so far
    (/proc/stat): the kernel's packet work (veth, bridge, tbf, nftables,
    delivery to sockets), charged to no process."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[5] + v[6]) / CLK


class Disturbance:
    """The CPU-seconds other processes took during a run: the machine's busy
    time minus what this run's processes used (measured by the caller) and
    minus interrupt time (this run's packets; a build takes next to none)."""

    def __enter__(self):
        self.t, self.b, self.i = time.monotonic(), cpu_busy(), irq_cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.busy = time.monotonic() - self.t, cpu_busy() - self.b
        self.irq = irq_cpu() - self.i

    def share(self, ours):
        return max(0.0, self.busy - self.irq - ours) / (self.wall * (os.cpu_count() or 1))


class HaifuRun:
    """One fresh fleet in `dir`: master and relay-a in hf0, c01..cNN in
    hf1..hfN."""

    def __init__(self, a, dir, rate_mbit, dead):
        self.a, self.dir, self.rate_mbit, self.dead = a, Path(dir), rate_mbit, dead
        self.home = self.dir / "home"
        self.dir.mkdir(parents=True)
        self.env = dict(os.environ, HAIFU_PLUGINS=str(a.bin), RUST_LOG="warn")
        self.env.pop("HAIFU_HOME", None)
        self.clients = [f"c{i:02}" for i in range(1, a.clients + 1)]
        self.procs = Procs(a.pidfile)

    def haifu(self, *args):
        return subprocess.run([str(self.a.bin / "haifu"), "--home", str(self.home), *args],
                              cwd=self.dir, env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def start(self, ns, role, name):
        cmd = in_ns(ns, [str(self.a.bin / "haifu"), "--home", str(self.home), role,
                         "--config", f"{name}.yaml"])
        return self.procs.start(cmd, self.dir / f"{name}.log", dict(self.env, RUST_LOG="info"),
                                self.dir)

    def setup(self):
        a, d = self.a, self.dir
        self.haifu("ca", "init")
        self.haifu("keys", "show")
        self.haifu("ca", "issue", "master", "--role", "master")
        self.haifu("ca", "issue", "relay-a", "--role", "relay")
        for n in self.clients:
            self.haifu("ca", "issue", n, "--role", "client")
        mp, rp, gp = a.port, a.port + 1, a.port + 2
        # As bench/fleet.sh: round_grace_secs lets the relay fetch the
        # artifact before round 1 goes out; extra keys come from the knobs.
        (d / "master.yaml").write_text(
            f"home: home\nlisten: 127.0.0.1:{mp}\nsettle_ms: {a.settle_ms}\n"
            f"round_grace_secs: {a.round_grace_secs}\npoll_ms: {a.poll_ms}\n{a.master_extra}")
        (d / "relay-a.yaml").write_text(
            f"name: relay-a\nmaster: {{address: '127.0.0.1:{mp}', name: master}}\n"
            f"listen: {SENDER_IP}:{rp}\n"
            "tls: {ca: home/ca/ca.crt, cert: home/certs/relay-a.crt, key: home/certs/relay-a.key}\n"
            f"multicast: {{group: '{a.group}:{gp}', interface: {SENDER_IP}, ttl: 1}}\n"
            f"data: relay-a-data\n{a.relay_extra}")
        for i, c in enumerate(self.clients, 1):
            (d / f"{c}.yaml").write_text(
                f"id: {c}\nartifact: app\nrelay: {{address: '{SENDER_IP}:{rp}', name: relay-a}}\n"
                f"tls: {{ca: home/ca/ca.crt, cert: home/certs/{c}.crt, key: home/certs/{c}.key}}\n"
                f"master_key: home/keys/master.pub\ninstall_root: {c}-root\n"
                f"multicast: {{interface: {receiver_ip(i)}}}\n{a.client_extra}")
        if a.retry_policy:
            shutil.copy(a.retry_policy, d / "bench.rhai")
        else:
            # bench/fleet.sh's retry policy: stop when all are delivered or
            # the planned rounds are sent, else the next round 1 s later.
            (d / "bench.rhai").write_text(
                "fn next_round(ctx) {\n"
                '  if ctx.delivered >= ctx.total { return #{ stop: true, reason: "all delivered" }; }\n'
                '  if ctx.round >= ctx.rounds { return #{ stop: true, reason: "planned rounds sent" }; }\n'
                "  1\n}\n")
        shutil.copy(a.broadcast_policy, d / "broadcast.rhai")
        self.write_workflow(None)

    def write_workflow(self, start):
        """The run's workflow, starting at `start` (a UTC datetime; None:
        long past). Written again just before the run with `--start-lead`
        seconds ahead: the master instructs the relay as soon as it drives
        the run, so the relay fetches before round 1, as in a real window."""
        a, d = self.a, self.dir
        when = start.strftime("%Y-%m-%dT%H:%M:%SZ") if start else "2026-01-01T00:00:00Z"
        (d / "bench.yaml").write_text(
            f"name: bench\nartifact: {{name: app, version: 1.0.0, path: {a.artifact}}}\n"
            f"targets: {{relays: [relay-a]}}\nschedule: {{start: {when}, deadline: 30m}}\n"
            f"transports: {{broadcast: multicast, unicast: quic}}\nrate: {self.rate_mbit:g}Mbit/s\n"
            "policies: {retry: bench.rhai, broadcast: broadcast.rhai}\n"
            f"steps:\n  - register\n  - broadcast: {{rounds: {a.rounds}}}\n  - audit\n"
            # With the start ahead the deadline is too: the run ends at its
            # audit instead of waiting for a disconnect at the deadline.
            + ("" if start else "  - delta: {until: 2s}\n  - disconnect\n"))

    def wait_log(self, procs, name, needle, secs):
        """Waits for `needle` in NAME.log; stops at once if one of `procs`
        has exited (a config it refused, a port in use)."""
        def cond():
            gone = [p.args[-1] for p in procs if p.poll() is not None]
            if gone:
                raise SystemExit(f"haifu exited before {name} logged {needle!r} ({gone})\n{tails(self.dir)}")
            return lines_with(self.dir / f"{name}.log", needle)
        wait_for(f"{name} to log {needle!r}", cond, secs, lambda: tails(self.dir))

    def known_clients(self):
        try:
            db = sqlite3.connect(f"file:{self.home / 'ledger.sqlite'}?mode=ro", uri=True, timeout=1)
            with db:
                return db.execute("SELECT count(*) FROM clients").fetchone()[0]
        except sqlite3.Error:
            return 0

    def start_fleet(self):
        """Master, relay and every client started, the clients registered
        with the relay and recorded by the master: (master, relay,
        {client: process})."""
        master = self.start(SENDER_NS, "master", "master")
        self.wait_log([master], "master", "master started", 60)
        relay = self.start(SENDER_NS, "relay", "relay-a")
        self.wait_log([master, relay], "relay-a", "connected to the master", 60)
        clients = {c: self.start(receiver_ns(i), "client", c) for i, c in enumerate(self.clients, 1)}
        for c in self.clients:
            self.wait_log([master, relay, *clients.values()], "relay-a", f"client registered client={c}", 90)
        wait_for("the master to record every client", lambda: self.known_clients() >= len(self.clients), 60,
                 lambda: tails(self.dir))
        return master, relay, clients

    def run(self):
        d, a = self.dir, self.a
        dump = lambda: tails(d)
        try:
            self.setup()
            master, relay, clients = self.start_fleet()
            stopped = self.clients[-1] if self.dead else None
            if stopped:
                clients[stopped].send_signal(signal.SIGSTOP)
            busy = wait_quiet(a.quiet_wait)
            pids = {"master": master.pid, "relay": relay.pid, **{c: p.pid for c, p in clients.items()}}
            cpu0 = {k: proc_cpu(p) for k, p in pids.items()}
            drops0, link0, run0 = udp_drops(a.clients), link_stats(), children_cpu()
            if a.start_lead > 0:
                lead = datetime.timedelta(seconds=a.start_lead)
                self.write_workflow(datetime.datetime.now(datetime.timezone.utc) + lead)
            with Disturbance() as dist:
                out = self.procs.run(
                    [str(a.bin / "haifu"), "--home", str(self.home), "run", "bench.yaml", "--live", "--json"],
                    a.run_timeout, cwd=d, env=self.env)
                cpu1 = {k: proc_cpu(p) for k, p in pids.items()}
            link1, drops1, run_cpu = link_stats(), udp_drops(a.clients), children_cpu() - run0
            dead_procs = [k for k, v in cpu1.items() if v is None]
        finally:
            self.procs.stop_all()
        if out.returncode != 0:
            raise SystemExit(f"haifu run failed: {out.stderr.strip()}\n{dump()}")
        if dead_procs:
            raise SystemExit(f"haifu processes exited during the run: {dead_procs}\n{dump()}")
        cpu = {k: cpu1[k] - cpu0[k] for k in pids}
        res = self.measure(json.loads(out.stdout), stopped)
        wire = link_delta(link0, link1)
        ours = sum(cpu.values()) + run_cpu
        alive = [c for c in self.clients if c != stopped]
        rx = [cpu[c] for c in alive]
        res.update(
            wire=wire, wire_ratio=wire["tx_bytes"] / a.size,
            receiver_cpu_s=rx, relay_cpu_s=cpu["relay"], master_cpu_s=cpu["master"],
            rcvbuf_drops=[y - x for x, y in zip(drops0, drops1)],
            cpu_s_per_gib=(sum(cpu[c] for c in alive if res["clients"].get(c))
                           / (res["delivered"] * a.size / GIB)) if res["delivered"] else None,
            busy_before=busy, disturbed=dist.share(ours), run_wall_s=dist.wall, irq_cpu_s=dist.irq,
            stopped=stopped,
        )
        self.verify(res)
        return res

    def measure(self, report, stopped):
        d, size = self.dir, self.a.size
        started = lines_with(d / "master.log", 'event="round-started"')
        if not started:
            raise SystemExit(f"no round-started event in master.log\n{tails(d)}")
        t0 = ts(started[0])
        relay = d / "relay-a.log"
        fetched = [ts(l) for l in lines_with(relay, "artifact fetched and checked")]
        first_send = [ts(l) for l in lines_with(relay, "round starting")]
        rounds = []
        for l in lines_with(relay, "round sent run="):
            f = fields(l)
            b, ms = int(f["bytes"]), int(f["elapsed_ms"])
            rounds.append({"round": int(f["round"]), "datagrams": int(f["datagrams"]), "bytes": b,
                           "elapsed_ms": ms, "ended_s": ts(l) - t0,
                           "mbit_s": b * 8 / ms / 1000 if ms else None})
        # A client decoded in round k if its "all blocks decoded" came
        # before round k+1's first datagram.
        data_round = lambda t: max(1, sum(1 for s in first_send if s <= t))
        clients = {}
        for c in self.clients:
            inst = lines_with(d / f"{c}.log", "installed; completion sent")
            dec = lines_with(d / f"{c}.log", "all blocks decoded")
            if not inst:
                clients[c] = None
                continue
            f = fields(dec[0]) if dec else {}
            clients[c] = {
                "installed_s": ts(inst[0]) - t0,
                "decoded_s": ts(dec[0]) - t0 if dec else None,
                "round": data_round(ts(dec[0])) if dec else None,
                "accepted": int(f.get("accepted", 0)), "redundant": int(f.get("redundant", 0)),
            }
        others = [v for c, v in clients.items() if c != stopped]
        done = [v for v in others if v]
        complete = len(done) == len(others)
        return {
            # Time by the clients' completions: the last of those that were
            # listening (all of them, or all but the stopped one).
            "time_s": max(v["installed_s"] for v in done) if complete else None,
            "last_decoded_s": max((v["decoded_s"] for v in done if v["decoded_s"] is not None), default=None),
            "delivered": len(done), "expected": len(others),
            "round1": sum(1 for v in done if v["round"] == 1),
            "rounds_sent": len(rounds),
            "last_round_used": max((v["round"] or 0 for v in done), default=None),
            "delivered_by_round": report.get("delivered_by_round", []),
            "relay_rounds": rounds,
            "relay_mbit_s": rounds[0]["mbit_s"] if rounds else None,
            "relay_fetch_s": fetched[0] - t0 if fetched else None,
            "first_datagram_s": first_send[0] - t0 if first_send else None,
            "clients": clients,
        }

    def verify(self, res):
        want = self.a.artifact_sha256
        bad = [c for c, v in res["clients"].items()
               if v and sha256(self.dir / f"{c}-root/current/artifact") != want]
        res["verified"] = not bad
        if bad:
            log(f"WARNING: haifu's installed artifact differs from the original on {bad}")


def uftp_run(a, dir, rate_mbit):
    """uftp in hf0 to one uftpd per receiver namespace; bench/fleet.sh's
    options (fixed rate, 1,400-byte blocks, 8 MiB buffers, closed group),
    no LD_PRELOAD shim: each namespace has its own ports and a multicast
    eth0."""
    d = Path(dir)
    d.mkdir(parents=True)
    procs = Procs(a.pidfile)
    ids = [f"0x{i:08x}" for i in range(1, a.clients + 1)]
    try:
        daemons = []
        for i, uid in enumerate(ids, 1):
            (d / f"r{i}").mkdir()
            daemons.append(procs.start(in_ns(receiver_ns(i), [
                "uftpd", "-d", "-q", "-p", str(a.uftp_port), "-U", uid, "-I", receiver_ip(i),
                "-M", f"{a.uftp_group}.1", "-D", str(d / f"r{i}"), "-B", str(8 * MIB), "-x", "2"]),
                d / f"uftpd{i}.log", os.environ, d))
        time.sleep(1.0)
        if any(p.poll() is not None for p in daemons):
            raise SystemExit(f"uftpd exited at start:\n{tails(d)}")
        # -R: kbit/s; -C none: that fixed rate; -H: a closed group, so uftp
        # starts once all have registered.
        cmd = in_ns(SENDER_NS, [
            "uftp", "-p", str(a.uftp_port), "-I", SENDER_IP, "-M", f"{a.uftp_group}.1",
            "-P", f"{a.uftp_group}.2", "-R", str(int(rate_mbit * 1000)), "-C", "none", "-b", "1400",
            "-B", str(8 * MIB), "-H", ",".join(ids), "-Y", "none", "-q", str(a.artifact)])
        busy = wait_quiet(a.quiet_wait)
        cpu0 = [proc_cpu(p.pid) for p in daemons]
        drops0, link0, c0 = udp_drops(a.clients), link_stats(), children_cpu()
        with Disturbance() as dist:
            t0 = time.time()
            out = procs.run(cmd, a.run_timeout, cwd=d)
            wall = time.time() - t0
            cpu1 = [proc_cpu(p.pid) for p in daemons]
        link1, drops1, sender_cpu = link_stats(), udp_drops(a.clients), children_cpu() - c0
    finally:
        procs.stop_all()
    text = out.stdout + out.stderr
    (d / "uftp.log").write_text(text)
    if None in cpu1:
        raise SystemExit(f"a uftpd exited during the run:\n{tails(d)}")
    rx = [y - x for x, y in zip(cpu0, cpu1)]
    passes = [int(x or y) for x, y in re.findall(r"Sending file.*pass (\d+)|pass (\d+)", text)]
    name = a.artifact.name
    ok = [i for i in range(1, a.clients + 1)
          if (d / f"r{i}" / name).exists() and sha256(d / f"r{i}" / name) == a.artifact_sha256]
    wire = link_delta(link0, link1)
    elapsed = re.search(r"Total elapsed time: ([0-9.]+) seconds", text)
    return {
        "time_s": wall if len(ok) == a.clients else None, "wall_s": wall, "exit": out.returncode,
        "transfer_s": float(elapsed.group(1)) if elapsed else None,
        "passes": max(passes, default=None), "delivered": len(ok), "verified": len(ok) == a.clients,
        "wire": wire, "wire_ratio": wire["tx_bytes"] / a.size,
        "receiver_cpu_s": rx, "sender_cpu_s": sender_cpu,
        "cpu_s_per_gib": sum(rx) / (len(ok) * a.size / GIB) if ok else None,
        "rcvbuf_drops": [y - x for x, y in zip(drops0, drops1)],
        "busy_before": busy, "disturbed": dist.share(sum(rx) + sender_cpu), "irq_cpu_s": dist.irq,
    }


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def runs_of(xs, f=str):
    return "/".join(f(x) for x in xs)


def table(head, rows):
    w = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).rjust(w[i]) for i, c in enumerate(r)) for r in [head, *rows])


def summarize(case, a):
    """The medians of a case's runs (and each run's rounds)."""
    H, U = case["haifu"], case["uftp"]
    mh = lambda k: med([r[k] for r in H])
    mu = lambda k: med([r[k] for r in U])
    s = {
        "haifu_s": mh("time_s"), "uftp_s": mu("time_s"),
        "haifu_wire": mh("wire_ratio"), "uftp_wire": mu("wire_ratio"),
        "rounds": [r["rounds_sent"] for r in H], "round1": [r["round1"] for r in H],
        "delivered": [r["delivered"] for r in H], "uftp_delivered": [r["delivered"] for r in U],
        "haifu_rx_cpu_s": med([med(r["receiver_cpu_s"]) for r in H]),
        "uftpd_rx_cpu_s": med([med(r["receiver_cpu_s"]) for r in U]),
        "haifu_cpu_per_gib": mh("cpu_s_per_gib"), "uftpd_cpu_per_gib": mu("cpu_s_per_gib"),
        "relay_mbit_s": mh("relay_mbit_s"), "relay_cpu_s": mh("relay_cpu_s"),
        "uftp_cpu_s": mu("sender_cpu_s"),
        "haifu_tbf_drops": med([r["wire"]["tbf_drops"] for r in H]),
        "uftp_tbf_drops": med([r["wire"]["tbf_drops"] for r in U]),
        "haifu_rcvbuf_drops": med([sum(r["rcvbuf_drops"]) for r in H]),
        "uftp_rcvbuf_drops": med([sum(r["rcvbuf_drops"]) for r in U]),
        "haifu_irq_s": mh("irq_cpu_s"), "uftp_irq_s": mu("irq_cpu_s"),
        "fetch_s": mh("relay_fetch_s"), "first_datagram_s": mh("first_datagram_s"),
        "round1_end_s": med([r["relay_rounds"][0]["ended_s"] if r["relay_rounds"] else None for r in H]),
        "last_decoded_s": mh("last_decoded_s"),
        "disturbed_max": max([r["disturbed"] for r in H + U], default=None),
    }
    s["ratio"] = s["uftp_s"] / s["haifu_s"] if s["uftp_s"] and s["haifu_s"] else None
    return s


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", type=Path, required=True, help="folder with haifu and the plugin .so files")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--lan", type=Path, required=True, help="lan.sh")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--pidfile", type=Path)
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rates", default="100mbit,1gbit", help="tc rates of hf0's link")
    p.add_argument("--losses", default="0,5,20", help="percent dropped at each receiver")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--send-pct", type=float, default=95,
                   help="both tools are told to send at this percent of the link's rate")
    p.add_argument("--dead", default="auto",
                   help="RATE:LOSS,... cases with one receiver stopped; auto: the first rate at 0 and 5%%; none")
    p.add_argument("--tools", default="haifu,uftp")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--start-lead", type=float, default=3.0)
    p.add_argument("--settle-ms", type=int, default=None, help="default 1500 + 60 per MiB (bench/fleet.sh)")
    p.add_argument("--round-grace-secs", type=int, default=600)
    p.add_argument("--poll-ms", type=int, default=100)
    p.add_argument("--master-extra", default="", help="YAML lines appended to master.yaml")
    p.add_argument("--relay-extra", default="")
    p.add_argument("--client-extra", default="")
    p.add_argument("--retry-policy", type=Path, help="a .rhai retry policy instead of fleet.sh's")
    p.add_argument("--broadcast-policy", type=Path, required=True,
                   help="the round_budget policy (the shipped policies/broadcast.rhai by default)")
    p.add_argument("--quiet-wait", type=float, default=120)
    p.add_argument("--attempts", type=int, default=2,
                   help="runs of a case at most, while other processes disturb it")
    p.add_argument("--run-timeout", type=float, default=900)
    p.add_argument("--port", type=int, default=31000)
    p.add_argument("--meta", default="{}", help="JSON object copied into the results (commit, command)")
    a = p.parse_args()
    a.bin = a.bin.resolve()
    a.size = a.size_mib * MIB
    if a.settle_ms is None:
        a.settle_ms = 1500 + 60 * a.size_mib
    for k in ("master_extra", "relay_extra", "client_extra"):
        v = getattr(a, k).replace("\\n", "\n")
        setattr(a, k, v + "\n" if v and not v.endswith("\n") else v)
    a.group, a.uftp_group, a.uftp_port = "239.255.77.1", "239.255.78", a.port + 10
    tools = set(a.tools.split(","))
    if not tools <= {"haifu", "uftp"} or not tools:
        raise SystemExit(f"lan_race: --tools takes haifu and/or uftp, not {a.tools!r}")
    rates = a.rates.split(",")
    losses = [float(x) for x in a.losses.split(",")]
    for r in rates:
        parse_rate(r)
    if a.dead == "auto":
        dead = {(rates[0], l) for l in (0.0, 5.0) if l in losses}
    elif a.dead in ("", "none"):
        dead = set()
    else:
        dead = set()
        for x in a.dead.split(","):
            r, _, l = x.partition(":")
            parse_rate(r)
            dead.add((r, float(l or 0)))
    if dead and "haifu" not in tools:
        dead = set()

    a.work.mkdir(parents=True, exist_ok=True)
    a.artifact = (a.work / "app.bin").resolve()
    log(f"artifact: {a.size_mib} MiB (seed {SEED}); {a.clients} receivers; "
        f"{a.runs} run(s) per case; settle_ms {a.settle_ms}")
    make_artifact(a.artifact, a.size, seed=SEED)
    a.artifact_sha256 = sha256(a.artifact)

    lan = lambda *args: subprocess.run(["bash", str(a.lan), *args], check=True, stdout=subprocess.DEVNULL)
    # The matrix, then dead-receiver cases it does not hold (haifu only).
    cases = [(r, l, True) for r in rates for l in losses]
    cases += [(r, l, False) for r, l in sorted(dead) if (r, l) not in {(c[0], c[1]) for c in cases}]
    total = sum(a.runs * ((len(tools) if m else 1) + ((r, l) in dead)) for r, l, m in cases)
    step = [0]

    def attempt(what, fn):
        """A run, again (up to --attempts in all) while other processes took
        more than 10% of the CPUs meanwhile; the least disturbed counts."""
        tries = []
        for k in range(max(1, a.attempts)):
            r = fn(k)
            tries.append(r)
            if r["disturbed"] <= 0.10:
                break
            log(f"   {what}: other processes took {r['disturbed']:.0%} of the CPUs; again")
        best = min(tries, key=lambda t: t["disturbed"])
        best["attempts"] = len(tries)
        return best

    def progress(tag, r, extra=""):
        step[0] += 1
        busy = "" if r["disturbed"] <= 0.10 else f", others took {r['disturbed']:.0%} of the CPUs"
        log(f"[{step[0]}/{total}] {tag}: {fmt(r['time_s'])} s, wire {r['wire_ratio']:.3f}x, "
            f"delivered {r['delivered']}{extra}, receiver CPU {fmt(med(r['receiver_cpu_s']))} s{busy}")

    results = []
    for rate, loss, in_matrix in cases:
        mbit = parse_rate(rate)
        send = mbit * a.send_pct / 100
        lan("rate", rate)
        lan("loss", f"{loss:g}")
        case = {"rate": rate, "link_mbit": mbit, "send_mbit": send, "loss_pct": loss,
                "haifu": [], "uftp": [], "dead": [], "in_matrix": in_matrix}
        name = f"{rate}-{loss:g}"
        for run in range(1, a.runs + 1):
            if "haifu" in tools:
                tag = f"haifu {rate} {loss:g}% run {run}/{a.runs}"
                r = attempt(tag, lambda k: run_haifu(a, a.work / f"haifu-{name}-{run}-{k}", send, False))
                case["haifu"].append(r)
                progress(tag, r, f"/{r['expected']}, rounds {r['rounds_sent']}, round 1: {r['round1']}, "
                                 f"relay {fmt(r['relay_mbit_s'], '.0f')} Mbit/s")
            if (rate, loss) in dead:
                tag = f"haifu {rate} {loss:g}% one receiver stopped, run {run}/{a.runs}"
                r = attempt(tag, lambda k: run_haifu(a, a.work / f"dead-{name}-{run}-{k}", send, True))
                case["dead"].append(r)
                progress(tag, r, f"/{r['expected']} listening, rounds {r['rounds_sent']}")
            if in_matrix and "uftp" in tools:
                tag = f"uftp  {rate} {loss:g}% run {run}/{a.runs}"
                r = attempt(tag, lambda k: run_uftp(a, a.work / f"uftp-{name}-{run}-{k}", send))
                case["uftp"].append(r)
                progress(tag, r, f"/{a.clients}, passes {r['passes']}")
        results.append(case)
        (a.json).write_text(json.dumps(dict(json.loads(a.meta), partial=True, cases=results), indent=1))
    lan("loss", "0")
    lan("rate", "off")

    out = {**json.loads(a.meta), "size": a.size, "clients": a.clients, "runs": a.runs,
           "send_pct": a.send_pct, "settle_ms": a.settle_ms, "rounds_planned": a.rounds, "start_lead_s": a.start_lead,
           "cpus": os.cpu_count(), "cases": results}
    for c in results:
        c["summary"] = summarize(c, a)
        if c["dead"]:
            stopped = c["dead"][0]["stopped"]
            # The same runs without it, over the same other clients.
            base = [max(v["installed_s"] for k, v in r["clients"].items() if k != stopped)
                    if all(v for k, v in r["clients"].items() if k != stopped) else None
                    for r in c["haifu"]]
            c["dead_summary"] = {"stopped": stopped, "with_s": med([r["time_s"] for r in c["dead"]]),
                                 "without_s": med(base), "rounds": [r["rounds_sent"] for r in c["dead"]]}
            d = c["dead_summary"]
            d["ratio"] = d["with_s"] / d["without_s"] if d["with_s"] and d["without_s"] else None
    a.json.write_text(json.dumps(out, indent=1))
    print(report(a, results))
    print(f"(every run: {a.json})")
    ok = all(r["delivered"] == r["expected"] and r["verified"] for c in results for r in c["haifu"] + c["dead"])
    ok = ok and all(r["verified"] for c in results for r in c["uftp"])
    return 0 if ok else 1


def run_haifu(a, folder, send_mbit, dead):
    try:
        return HaifuRun(a, folder, send_mbit, dead).run()
    finally:
        prune(folder)


def run_uftp(a, folder, send_mbit):
    try:
        return uftp_run(a, folder, send_mbit)
    finally:
        prune(folder)


def report(a, results):
    gib = a.size / GIB
    lines = [
        f"\nLAN race: {a.size_mib} MiB to {a.clients} receivers (one network namespace each, on a "
        f"bridge), sender's link capped with tbf, loss dropped independently per receiver; "
        f"medians of {a.runs} run(s); {os.cpu_count()} CPUs.",
        f"Both tools told to send at {a.send_pct:g}% of the link rate. haifu time = master's "
        "round-1 start to the last client's completion (registration is before it; "
        + (f"the run's start was {a.start_lead:g} s after `haifu run`, so the relay fetched the "
           "artifact on instruction before round 1" if a.start_lead > 0 else
           "round 1 started at once, the relay's artifact fetch included")
        + "); uftp time = the uftp process's wall time (includes its "
        "announce and registration).",
        "wire = bytes hf0's eth0 transmitted during the run / the file (Ethernet header "
        "included, no preamble/FCS/gap; after tbf). rounds and round-1 = each run's. "
        "rx CPU = median per receiver (utime+stime).\n",
    ]
    head = ["link", "loss", "haifu s", "uftp s", "uftp/haifu", "wire haifu", "wire uftp",
            "rounds", "round-1 done", "rx CPU s haifu", "rx CPU s uftpd", "s/GiB haifu",
            "s/GiB uftpd", "relay Mbit/s"]
    rows = []
    for c in results:
        if not c["in_matrix"]:
            continue
        s = c["summary"]
        rows.append([c["rate"], f"{c['loss_pct']:g}%", fmt(s["haifu_s"]), fmt(s["uftp_s"]),
                     fmt(s["ratio"]), fmt(s["haifu_wire"], ".3f"), fmt(s["uftp_wire"], ".3f"),
                     runs_of(s["rounds"]), runs_of(s["round1"], lambda x: f"{x}/{a.clients}"),
                     fmt(s["haifu_rx_cpu_s"]), fmt(s["uftpd_rx_cpu_s"]), fmt(s["haifu_cpu_per_gib"]),
                     fmt(s["uftpd_cpu_per_gib"]), fmt(s["relay_mbit_s"], ".0f")])
    lines.append(table(head, rows))
    lines.append(f"\ns/GiB = receivers' CPU seconds per GiB delivered ({gib:g} GiB per receiver); "
                 "relay Mbit/s = round 1's bytes*8/elapsed from its \"round sent\" line (UDP payload).")
    lines.append("\nwhere haifu's time goes (medians, s from round-1 start): relay fetch done, first "
                 "datagram, round 1 sent, last client decoded, last client installed; drops by tbf "
                 "on hf0 and for full receive buffers (all receivers); the senders' CPU s; the kernel's interrupt CPU s (machine-wide: the packets' work in veth, bridge, tbf, nftables); the largest share of the CPUs other processes took during a run:")
    for c in results:
        s = c["summary"]
        if not c["haifu"]:
            continue
        lines.append(
            f"  {c['rate']:>7} {c['loss_pct']:>4g}%: fetch {fmt(s['fetch_s'])}, first datagram "
            f"{fmt(s['first_datagram_s'])}, round 1 sent {fmt(s['round1_end_s'])}, decoded "
            f"{fmt(s['last_decoded_s'])}, installed {fmt(s['haifu_s'])}; tbf drops haifu "
            f"{fmt(s['haifu_tbf_drops'], '.0f')} / uftp {fmt(s['uftp_tbf_drops'], '.0f')}; rcvbuf drops "
            f"haifu {fmt(s['haifu_rcvbuf_drops'], '.0f')} / uftp {fmt(s['uftp_rcvbuf_drops'], '.0f')}; "
            f"relay CPU {fmt(s['relay_cpu_s'])} s, uftp CPU {fmt(s['uftp_cpu_s'])} s; kernel "
            f"interrupt CPU haifu {fmt(s['haifu_irq_s'])} s / uftp {fmt(s['uftp_irq_s'])} s; "
            f"max share of CPUs taken by others {fmt(s['disturbed_max'], '.0%')}")
    dead = [c for c in results if c.get("dead_summary")]
    if dead:
        lines.append("\ndead receiver: one client SIGSTOPped for the whole run; the others' last "
                     "completion, with it and in the same case's runs without it (same clients):")
        head = ["link", "loss", "stopped", "others s, one stopped", "others s, none stopped",
                "ratio", "rounds sent (stopped)"]
        lines.append(table(head, [[c["rate"], f"{c['loss_pct']:g}%", c["dead_summary"]["stopped"],
                                   fmt(c["dead_summary"]["with_s"]), fmt(c["dead_summary"]["without_s"]),
                                   fmt(c["dead_summary"]["ratio"], ".3f"),
                                   runs_of(c["dead_summary"]["rounds"])] for c in dead]))
    return "\n".join(lines)


if __name__ == "__main__":
    # lan-race.sh runs this in the background (so that its own trap runs at
    # once on a signal), where SIGINT starts ignored: take both back, so the
    # `finally` blocks stop every process on Ctrl-C or kill.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())

#!/usr/bin/env python3
"""The fleet benchmark's driver (bench/fleet.sh builds, installs and calls it).

One master, one relay and N clients as real `haifu` processes on loopback
multicast; uftp to N uftpd receivers as the baseline, same file, same rate,
same run. Prints the table and writes results.json into the work folder.

Measures, per haifu case (one fresh fleet each):
  total    from round 1's start (the master's event="round-started") to the
           last client's "installed; completion sent"
  goodput  artifact bytes / (that client's "installed" - round 1 start)
  ratio    bytes the relay sent per round (its "round sent" line) / size
  rounds   the last round that delivered anyone (the report's
           delivered_by_round); every client must be delivered. The master
           counts a completion in the round on air when it records it, so
           the table adds "decoded in N" when the clients' logs disagree:
           N = the relay rounds whose first datagram preceded the last
           client's "all blocks decoded"
and a breakdown: the relay's artifact fetch from the master (part of
`total`), its first datagram, each round's duration and achieved rate, the
datagrams the kernel dropped for full receive buffers (/proc/net/snmp), and
the CPU other processes took meanwhile (a case they disturbed is rerun).

uftp: wall time of the uftp process (it exits when every receiver has the
file: announce, registration, data, NAK repairs, completion), per receiver
the transfer time uftp prints, and its passes over the file.
"""

import argparse
import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

MIB = 1 << 20
TS = re.compile(r"^(\d{4}-\d\d-\d\dT[0-9:.]+Z)\s")
KV = re.compile(r'(\w+)=("[^"]*"|\{[^}]*\}|\S+)')

PROCS = []  # every process started here, to stop on any exit


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def record_pid(pidfile, pid):
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{pid}\n")


def start(cmd, logfile, env, cwd, pidfile):
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=open(logfile, "ab"),
        env=env,
        cwd=cwd,
    )
    PROCS.append(p)
    record_pid(pidfile, p.pid)
    return p


def stop_all(grace=15.0):
    for p in PROCS:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    end = time.monotonic() + grace
    for p in PROCS:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    PROCS.clear()


def ts(line):
    m = TS.match(line)
    return datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() if m else None


def fields(line):
    return {k: v.strip('"') for k, v in KV.findall(line)}


def lines_with(path, needle):
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [l for l in text.splitlines() if needle in l]


def wait_for(what, cond, secs, on_fail=None):
    end = time.monotonic() + secs
    while not cond():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}" + (f"\n{on_fail()}" if on_fail else ""))
        time.sleep(0.1)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def crypto_floor(a):
    """Wall time of what `clients` haifu clients must compute whatever the
    transport: each hashes the artifact (sha3-256, the manifest's digest) and
    authenticates its datagrams (HMAC-SHA256 over at least the artifact's
    bytes), all at once on this machine's CPUs; openssl does both."""
    wait_quiet(a.quiet_wait)
    cmd = (f"openssl dgst -sha3-256 '{a.artifact}' >/dev/null && "
           f"openssl dgst -sha256 -hmac haifu '{a.artifact}' >/dev/null")
    t0 = time.time()
    procs = [subprocess.Popen(["sh", "-c", cmd]) for _ in range(a.clients)]
    for p in procs:
        p.wait()
    return time.time() - t0


def make_artifact(path, size, seed):
    """Pseudo-random bytes (incompressible, like a packed release) from a
    fixed seed: the same file on every run."""
    if path.exists() and path.stat().st_size == size:
        return
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MIB)
            f.write(rng.randbytes(n))
            left -= n


def cpu_busy():
    """Busy CPU-seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    import resource
    return sum(r.ru_utime + r.ru_stime for r in (
        resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)))


def wait_quiet(max_wait, busy_below=0.25, window=3.0):
    """Waits (up to max_wait s) until the machine's CPUs are mostly idle over
    `window` s: other sessions' builds would be measured with us."""
    ncpu = os.cpu_count() or 1
    end = time.monotonic() + max_wait
    while True:
        b0 = cpu_busy()
        time.sleep(window)
        frac = (cpu_busy() - b0) / window / ncpu
        if frac < busy_below or time.monotonic() > end:
            return frac
        log(f"   machine busy ({frac:.0%} of {ncpu} CPUs); waiting")


def udp_counters():
    """The kernel's UDP counters (/proc/net/snmp): RcvbufErrors counts
    datagrams dropped because a socket's receive buffer was full."""
    with open("/proc/net/snmp") as f:
        rows = [l.split()[1:] for l in f if l.startswith("Udp:")]
    return dict(zip(rows[0], map(int, rows[1])))


class Cpu:
    """CPU-seconds spent during a case by this benchmark's processes and by
    everything else on the machine (the second should be near 0), and the
    datagrams the kernel dropped for full receive buffers (machine-wide;
    every multicast datagram counts once per receiving socket)."""

    def __enter__(self):
        self.t, self.b, self.c = time.monotonic(), cpu_busy(), children_cpu()
        self.u = udp_counters()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.t
        self.ours = children_cpu() - self.c
        self.others = max(0.0, cpu_busy() - self.b - self.ours)
        u = udp_counters()
        self.drops = u["RcvbufErrors"] - self.u["RcvbufErrors"]
        self.received = u["InDatagrams"] - self.u["InDatagrams"]

    def dict(self):
        return {"wall_s": self.wall, "ours_cpu_s": self.ours, "others_cpu_s": self.others,
                "udp_rcvbuf_drops": self.drops, "udp_received": self.received}


def tails(folder, n=8):
    out = []
    for p in sorted(Path(folder).glob("*.log")):
        lines = p.read_text(errors="replace").splitlines()
        out.append(f"--- {p}\n" + "\n".join(lines[-n:]))
    return "\n".join(out)


def prune(folder):
    """Drops a case's trees and artifacts (GiBs), keeps its logs and configs."""
    import shutil
    for p in Path(folder).iterdir() if Path(folder).exists() else []:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.suffix not in (".log", ".yaml", ".rhai"):
            p.unlink(missing_ok=True)


class Haifu:
    """One fresh fleet in `dir`: a master, relay-a, clients c01..cNN."""

    def __init__(self, a, dir, port, group):
        self.a, self.dir, self.port, self.group = a, Path(dir), port, group
        self.home = self.dir / "home"
        self.dir.mkdir(parents=True)
        self.env = dict(os.environ, HAIFU_PLUGINS=str(a.bin), RUST_LOG="warn")
        self.env.pop("HAIFU_HOME", None)
        self.clients = [f"c{i:02}" for i in range(1, a.clients + 1)]

    def haifu(self, *args, **kw):
        return subprocess.run(
            [str(self.a.bin / "haifu"), "--home", str(self.home), *args],
            cwd=self.dir, env=self.env, check=True, capture_output=True, text=True, **kw,
        ).stdout

    def start(self, role, name):
        env = dict(self.env, RUST_LOG="info")
        return start(
            [str(self.a.bin / "haifu"), "--home", str(self.home), role, "--config", f"{name}.yaml"],
            self.dir / f"{name}.log", env, self.dir, self.a.pidfile,
        )

    def setup(self, rate_mbit, loss, rounds):
        a, d = self.a, self.dir
        self.haifu("ca", "init")
        self.haifu("keys", "show")
        self.haifu("ca", "issue", "master", "--role", "master")
        self.haifu("ca", "issue", "relay-a", "--role", "relay")
        for n in self.clients:
            self.haifu("ca", "issue", n, "--role", "client")
        mp, rp = self.port, self.port + 1
        # round_grace_secs: the relay fetches the artifact before round 1 goes
        # out; the master must not give up on the round meanwhile.
        (d / "master.yaml").write_text(
            f"home: home\nlisten: 127.0.0.1:{mp}\nsettle_ms: {a.settle_ms}\n"
            f"round_grace_secs: 600\npoll_ms: 100\n"
        )
        (d / "relay-a.yaml").write_text(
            f"name: relay-a\nmaster: {{address: '127.0.0.1:{mp}', name: master}}\n"
            f"listen: 127.0.0.1:{rp}\n"
            "tls: {ca: home/ca/ca.crt, cert: home/certs/relay-a.crt, key: home/certs/relay-a.key}\n"
            f"multicast: {{group: '{self.group}:{mp + 2}', interface: 127.0.0.1}}\ndata: relay-a-data\n"
        )
        for i, c in enumerate(self.clients):
            testing = f"testing: {{drop_datagrams: {loss}, seed: {i + 1}}}\n" if loss else ""
            (d / f"{c}.yaml").write_text(
                f"id: {c}\nartifact: app\nrelay: {{address: '127.0.0.1:{rp}', name: relay-a}}\n"
                f"tls: {{ca: home/ca/ca.crt, cert: home/certs/{c}.crt, key: home/certs/{c}.key}}\n"
                f"master_key: home/keys/master.pub\ninstall_root: {c}-root\n"
                f"multicast: {{interface: 127.0.0.1}}\n{testing}"
            )
        # The retry policy of the fleet tests: stop when all are delivered or
        # the planned rounds are sent, else the next round 1 s later.
        (d / "bench.rhai").write_text(
            "fn next_round(ctx) {\n"
            '  if ctx.delivered >= ctx.total { return #{ stop: true, reason: "all delivered" }; }\n'
            '  if ctx.round >= ctx.rounds { return #{ stop: true, reason: "planned rounds sent" }; }\n'
            "  1\n}\n"
        )
        (d / "bench.yaml").write_text(
            f"name: bench\nartifact: {{name: app, version: 1.0.0, path: {a.artifact}}}\n"
            "targets: {relays: [relay-a]}\nschedule: {start: 2026-01-01T00:00:00Z, deadline: 30m}\n"
            f"transports: {{broadcast: multicast, unicast: quic}}\nrate: {rate_mbit}Mbit/s\n"
            "policies: {retry: bench.rhai}\n"
            f"steps:\n  - register\n  - broadcast: {{rounds: {rounds}}}\n  - audit\n"
            "  - delta: {until: 2s}\n  - disconnect\n"
        )

    def known_clients(self):
        try:
            db = sqlite3.connect(f"file:{self.home / 'ledger.sqlite'}?mode=ro", uri=True, timeout=1)
            with db:
                return db.execute("SELECT count(*) FROM clients").fetchone()[0]
        except sqlite3.Error:
            return 0

    def run(self, rate_mbit, loss, rounds):
        d = self.dir
        self.setup(rate_mbit, loss, rounds)
        dump = lambda: tails(d)
        self.start("master", "master")
        wait_for("master start", lambda: lines_with(d / "master.log", "master started"), 60, dump)
        self.start("relay", "relay-a")
        wait_for("relay to connect", lambda: lines_with(d / "relay-a.log", "connected to the master"), 60, dump)
        for c in self.clients:
            self.start("client", c)
        for c in self.clients:
            wait_for(f"{c} to register", lambda: lines_with(d / "relay-a.log", f"client registered client={c}"), 60, dump)
        wait_for("the master to record every client", lambda: self.known_clients() >= len(self.clients), 60, dump)
        busy = wait_quiet(self.a.quiet_wait)
        cpu = Cpu()
        with cpu:
            t0 = time.time()
            out = subprocess.run(
                [str(self.a.bin / "haifu"), "--home", str(self.home), "run", "bench.yaml", "--live", "--json"],
                cwd=d, env=self.env, capture_output=True, text=True, timeout=3600,
            )
            wall = time.time() - t0
            stop_all()
        if out.returncode != 0:
            raise SystemExit(f"haifu run failed: {out.stderr}\n{dump()}")
        report = json.loads(out.stdout)
        res = self.measure(report)
        res.update(rate_mbit=rate_mbit, loss=loss, rounds_planned=rounds, run_wall_s=wall,
                   busy_before=busy, cpu=cpu.dict(), report=report)
        self.verify(res)
        return res

    def measure(self, report):
        d, size = self.dir, self.a.size
        started = [l for l in lines_with(d / "master.log", 'event="round-started"')]
        if not started:
            raise SystemExit(f"no round-started event in master.log\n{tails(d)}")
        t_start = ts(started[0])
        relay = d / "relay-a.log"
        fetched = [ts(l) for l in lines_with(relay, "artifact fetched and checked")]
        first_send = [ts(l) for l in lines_with(relay, "round starting")]
        # Round N's first datagram leaves at first_send[N-1]: a client that
        # decoded before it needed only the rounds before (the report counts
        # a completion in the round on air when the master records it, which
        # is later by the client's verify and install).
        data_round = lambda t: sum(1 for s in first_send if s <= t)
        per_round = []
        for l in lines_with(relay, "round sent run="):
            f = fields(l)
            per_round.append({
                "round": int(f["round"]), "datagrams": int(f["datagrams"]), "bytes": int(f["bytes"]),
                "ratio": int(f["bytes"]) / size, "elapsed_ms": int(f["elapsed_ms"]),
            })
        clients = {}
        for c in self.clients:
            log_path = d / f"{c}.log"
            inst = lines_with(log_path, "installed; completion sent")
            dec = lines_with(log_path, "all blocks decoded")
            rec = lines_with(log_path, "receiving")
            if not inst:
                clients[c] = None
                continue
            t = ts(inst[0]) - t_start
            f = fields(dec[0]) if dec else {}
            clients[c] = {
                "installed_s": t,
                "decoded_s": (ts(dec[0]) - t_start) if dec else None,
                "receiving_s": (ts(rec[0]) - t_start) if rec else None,
                "goodput_MBps": size / t / 1e6,
                "data_rounds": data_round(ts(dec[0])) if dec else None,
                "accepted": int(f.get("accepted", 0)),
                "redundant": int(f.get("redundant", 0)),
            }
        done = [v for v in clients.values() if v]
        by_round = report.get("delivered_by_round", [])
        rounds_needed = max((i + 1 for i, n in enumerate(by_round) if n), default=None)
        return {
            "total_s": max(v["installed_s"] for v in done) if done else None,
            "delivered": len(done),
            "delivered_by_round": by_round,
            "rounds_needed": rounds_needed if sum(by_round) == len(self.clients) else None,
            "data_rounds": max((v["data_rounds"] or 0 for v in done), default=None)
            if len(done) == len(self.clients) else None,
            "rounds_sent": len(per_round),
            "relay_rounds": per_round,
            "relay_fetch_s": (fetched[0] - t_start) if fetched else None,
            "relay_first_send_s": (first_send[0] - t_start) if first_send else None,
            "clients": clients,
        }

    def verify(self, res):
        want = self.a.artifact_sha256
        bad = [c for c in self.clients
               if res["clients"].get(c) and sha256(self.dir / f"{c}-root/current/artifact") != want]
        res["verified"] = not bad
        if bad:
            log(f"WARNING: installed artifact differs from the original on {bad}")


def run_uftp(a, dir, port, group, rate_mbit):
    d = Path(dir)
    d.mkdir(parents=True)
    env = dict(os.environ, LD_PRELOAD=str(a.uftp_shim))
    ids = [f"0x{i:08x}" for i in range(1, a.clients + 1)]
    for i, uid in enumerate(ids, 1):
        (d / f"r{i}").mkdir()
        # -B: the same receive-buffer request as haifu's multicast plugin
        # (8 MiB; the kernel caps both at net.core.rmem_max).
        start(["uftpd", "-d", "-q", "-p", str(port), "-U", uid, "-I", "127.0.0.1",
               "-M", f"{group}.1", "-D", str(d / f"r{i}"), "-B", str(8 * MIB), "-x", "2"],
              d / f"uftpd{i}.log", env, d, a.pidfile)
    time.sleep(1.0)
    dead = [p for p in PROCS if p.poll() is not None]
    if dead:
        raise SystemExit(f"uftpd exited at start:\n{tails(d)}")
    # Fixed rate (-C none) in kbit/s of UDP payload, as haifu's pacer counts
    # its datagrams; 1,400-byte blocks like haifu's 1,400-byte symbols; a
    # closed group (-H) so uftp starts as soon as the eight have registered.
    cmd = ["uftp", "-p", str(port), "-I", "127.0.0.1", "-M", f"{group}.1", "-P", f"{group}.2",
           "-R", str(rate_mbit * 1000), "-C", "none", "-b", "1400", "-B", str(8 * MIB),
           "-H", ",".join(ids), "-Y", "none", "-q", str(a.artifact)]
    busy = wait_quiet(a.quiet_wait)
    cpu = Cpu()
    with cpu:
        t0 = time.time()
        out = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=3600)
        wall = time.time() - t0
        stop_all()
    (d / "uftp.log").write_text(out.stdout + out.stderr)
    text = out.stdout + out.stderr
    hosts = {m.group(1): float(m.group(3)) for m in re.finditer(
        r"Host: (0x[0-9A-Fa-f]+)\s+Status: (\w+)\s+time:\s+([0-9.]+) seconds", text)
        if m.group(2) == "Completed"}
    passes = re.findall(r"Sending file.*pass (\d+)|pass (\d+)", text)
    npass = max((int(x or y) for x, y in passes), default=None)
    elapsed = re.search(r"Total elapsed time: ([0-9.]+) seconds", text)
    name = a.artifact.name
    ok = [i for i in range(1, a.clients + 1)
          if (d / f"r{i}" / name).exists() and sha256(d / f"r{i}" / name) == a.artifact_sha256]
    return {
        "rate_mbit": rate_mbit, "exit": out.returncode, "total_s": wall,
        "transfer_s": float(elapsed.group(1)) if elapsed else None,
        "host_s": hosts, "passes": npass, "delivered": len(ok), "verified": len(ok) == a.clients,
        "goodput_MBps": {h: a.size / t / 1e6 for h, t in hosts.items() if t > 0},
        "busy_before": busy, "cpu": cpu.dict(),
    }


def round_figures(x):
    """A relay round's duration and the rate it achieved (the pacer's cap is
    the workflow's rate)."""
    return f"{x['elapsed_ms'] / 1000:.1f} s at {x['bytes'] * 8 / x['elapsed_ms'] / 1000:.0f} Mbit/s"


def fmt(x, spec=".2f", none="-"):
    return none if x is None else format(x, spec)


def table(a, A, B, U):
    def hrow(name, r):
        gp = [v["goodput_MBps"] for v in r["clients"].values() if v]
        ratios = "/".join(f"{x['ratio']:.3f}" for x in r["relay_rounds"]) or "-"
        rounds = f"{r['rounds_needed']}" if r["rounds_needed"] else f"- ({r['delivered']}/{a.clients})"
        if r["rounds_needed"] and r["data_rounds"] != r["rounds_needed"]:
            rounds += f" (decoded in {r['data_rounds']})"
        return [name, fmt(r["total_s"]), fmt(sum(gp) / len(gp) if gp else None),
                fmt(min(gp) if gp else None), ratios, rounds,
                fmt(U["total_s"] / r["total_s"] if r["total_s"] and U["verified"] else None)]

    gp = list(U["goodput_MBps"].values())
    rows = [hrow("haifu, no loss", A), hrow(f"haifu, {a.loss:.0%} loss", B),
            ["uftp (baseline)", fmt(U["total_s"]), fmt(sum(gp) / len(gp) if gp else None),
             fmt(min(gp) if gp else None), "n/a", f"{U['passes'] or '-'} pass(es)"
             if U["verified"] else f"- ({U['delivered']}/{a.clients})", "1.00"]]
    head = ["", "total s", "MB/s mean", "MB/s min", "relay bytes/size per round", "rounds",
            "uftp_time/haifu_time"]
    w = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i]) for i, c in enumerate(r))
             for r in [head, *rows]]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", type=Path, required=True, help="folder with haifu and the two plugin .so")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--uftp-shim", type=Path, required=True)
    p.add_argument("--pidfile", type=Path)
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rates", default="800,600,400,300,200",
                   help="Mbit/s to try, fastest first; the first whose no-loss run needs 1 round is used")
    p.add_argument("--loss", type=float, default=0.05)
    p.add_argument("--loss-rates", default="",
                   help="Mbit/s at which to run the loss case again (where does one round suffice?)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settle-ms", type=int, default=None,
                   help="master's settle_ms (default: 1500 + 60 per MiB, the clients' verify and install)")
    p.add_argument("--quiet-wait", type=float, default=600,
                   help="wait up to this many s before each case for other processes to leave the CPUs")
    p.add_argument("--port", type=int, default=31000)
    p.add_argument("--keep", action="store_true", help="keep each case's folder (GiBs)")
    a = p.parse_args()
    a.bin = a.bin.resolve()
    a.size = a.size_mib * MIB
    if a.settle_ms is None:
        a.settle_ms = 1500 + 60 * a.size_mib
    a.work.mkdir(parents=True, exist_ok=True)
    a.artifact = (a.work / "app.bin").resolve()
    log(f"artifact: {a.size_mib} MiB at {a.artifact}")
    make_artifact(a.artifact, a.size, seed=20260101)
    a.artifact_sha256 = sha256(a.artifact)
    rates = [int(x) for x in a.rates.split(",")]

    def case(tag, port, group, rate, loss):
        # A case during which other processes took more than 10% of the
        # CPUs is run again (at most twice more); the cleanest one counts.
        tries = []
        for attempt in range(3):
            folder = a.work / (tag if attempt == 0 else f"{tag}-again{attempt}")
            log(f"== {tag}: {rate} Mbit/s, loss {loss}, {a.rounds} rounds planned")
            try:
                r = Haifu(a, folder, port, group).run(rate, loss, a.rounds)
            finally:
                stop_all()
                if not a.keep:
                    prune(folder)
            r["disturbed"] = r["cpu"]["others_cpu_s"] / (r["cpu"]["wall_s"] * (os.cpu_count() or 1))
            tries.append(r)
            if r["disturbed"] <= 0.10:
                break
            log(f"   other processes took {r['disturbed']:.0%} of the CPUs meanwhile; again")
        r = min(tries, key=lambda t: t["disturbed"])
        r["attempts"] = len(tries)
        log(f"   total {fmt(r['total_s'])} s, delivered {r['delivered']}/{a.clients}, "
            f"by round {r['delivered_by_round']}, relay ratios "
            f"{[round(x['ratio'], 4) for x in r['relay_rounds']]}, fetch {fmt(r['relay_fetch_s'])} s, "
            f"first datagram {fmt(r['relay_first_send_s'])} s, data rounds {r['data_rounds']}, "
            f"CPU s ours {r['cpu']['ours_cpu_s']:.1f} others {r['cpu']['others_cpu_s']:.1f}, "
            f"kernel drops (full buffers) {r['cpu']['udp_rcvbuf_drops']}")
        return r

    sweep, A = [], None
    for i, rate in enumerate(rates):
        r = case(f"haifu-noloss-{rate}", a.port + 10 * i, f"239.255.97.{i + 1}", rate, 0.0)
        sweep.append(r)
        if r["rounds_needed"] == 1:
            A = r
            break
    if A is None:
        A = min(sweep, key=lambda r: (r["rounds_needed"] or 99, r["total_s"] or 1e9))
        log(f"no rate delivered everyone in round 1; using {A['rate_mbit']} Mbit/s")
    rate = A["rate_mbit"]
    B = case(f"haifu-loss-{rate}", a.port + 200, "239.255.98.1", rate, a.loss)
    # Optional: where 5% loss does fit in one round on this machine.
    loss_probe = []
    for i, lr in enumerate(int(x) for x in a.loss_rates.split(",") if x):
        loss_probe.append(case(f"haifu-loss-{lr}", a.port + 400 + 10 * i, f"239.255.98.{i + 2}", lr, a.loss))
    log(f"== uftp: {rate} Mbit/s to {a.clients} uftpd")
    tries = []
    for attempt in range(3):
        folder = a.work / ("uftp" if attempt == 0 else f"uftp-again{attempt}")
        try:
            U = run_uftp(a, folder, a.port + 300 + attempt, "239.255.99", rate)
        finally:
            stop_all()
            if not a.keep:
                prune(folder)
        U["disturbed"] = U["cpu"]["others_cpu_s"] / (U["cpu"]["wall_s"] * (os.cpu_count() or 1))
        tries.append(U)
        if U["disturbed"] <= 0.10:
            break
        log(f"   other processes took {U['disturbed']:.0%} of the CPUs meanwhile; again")
    U = min(tries, key=lambda t: t["disturbed"])
    U["attempts"] = len(tries)
    log(f"   uftp exit {U['exit']}, {fmt(U['total_s'])} s, delivered {U['delivered']}/{a.clients}, "
        f"passes {U['passes']}")

    floor_s = crypto_floor(a)
    log(f"== the clients' mandatory checks alone: {fmt(floor_s)} s")

    results = {"size": a.size, "clients": a.clients, "rate_mbit": rate, "loss": a.loss,
               "sweep": sweep, "no_loss": A, "loss_case": B, "loss_probe": loss_probe, "uftp": U,
               "crypto_floor_s": floor_s}
    (a.work / "results.json").write_text(json.dumps(results, indent=2, default=str))

    print(f"\nfleet benchmark: {a.size_mib} MiB to {a.clients} clients on loopback multicast, "
          f"{rate} Mbit/s for both, {os.cpu_count()} CPUs")
    print("haifu total = master's round-1 start to the last client's completion (includes the "
          "relay's fetch of the artifact from the master);")
    print("uftp total = wall time of the uftp process. MB/s = 10^6 B/s of artifact per client.\n")
    print(table(a, A, B, U))
    print(f"\nsweep (no loss): " + ", ".join(
        f"{r['rate_mbit']} Mbit/s -> {r['rounds_needed'] or 'not all'} round(s), "
        f"by round {r['delivered_by_round']}, {fmt(r['total_s'])} s, "
        f"others' CPU share {r['disturbed']:.0%}" for r in sweep))
    for name, r in [("no loss", A), (f"{a.loss:.0%} loss", B)]:
        print(f"haifu {name}: relay fetch done at {fmt(r['relay_fetch_s'])} s, first datagram at "
              f"{fmt(r['relay_first_send_s'])} s, rounds sent {r['rounds_sent']} "
              f"({', '.join(round_figures(x) for x in r['relay_rounds'])}), "
              f"installed files verified: {r['verified']}, datagrams dropped by the kernel for full "
              f"receive buffers {r['cpu']['udp_rcvbuf_drops']} (of {r['cpu']['udp_received']} "
              f"delivered), other processes' share of the CPUs {r['disturbed']:.0%}")
    print(f"uftp: data transfer {fmt(U['transfer_s'])} s of {fmt(U['total_s'])} s, received files "
          f"verified: {U['verified']}, datagrams dropped by the kernel for full receive buffers "
          f"{U['cpu']['udp_rcvbuf_drops']} (of {U['cpu']['udp_received']} delivered), other "
          f"processes' share of the CPUs {U['disturbed']:.0%}")
    print(f"floor: the checks every haifu client must make (sha3-256 of the artifact and "
          f"HMAC-SHA256 of its bytes, openssl, {a.clients} processes at once on "
          f"{os.cpu_count()} CPUs), with no network at all: {fmt(floor_s)} s = "
          f"{floor_s / U['total_s']:.2f}x uftp's total (uftp checks nothing cryptographic)")
    for r in loss_probe:
        print(f"haifu {a.loss:.0%} loss at {r['rate_mbit']} Mbit/s: rounds {r['rounds_needed']} "
              f"(decoded in {r['data_rounds']}), total {fmt(r['total_s'])} s, kernel drops "
              f"{r['cpu']['udp_rcvbuf_drops']} of {r['cpu']['udp_received']} delivered")
    print(f"(details: {a.work / 'results.json'})")
    ok = A["rounds_needed"] and B["rounds_needed"] and U["verified"] and A["verified"] and B["verified"]
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all(5)

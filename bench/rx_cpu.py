#!/usr/bin/env python3
"""Receiver CPU per GiB (issue 13): what a receiving client spends to take
one broadcast in, on loopback, for one or more builds in the same run.

For each build (`--bin NAME=FOLDER`, a folder with `haifu` and the two
plugin `.so`) and each loss (`--losses`, the clients' seeded
`testing.drop_datagrams`): a fresh fleet of bench/fleet_bench.py (master,
relay, CLIENTS clients on 127.0.0.1 multicast), one broadcast of SIZE MiB
at RATE Mbit/s, and each client's utime+stime (/proc/PID/stat, all its
threads) from just before `haifu run` to just after it, i.e. the round:
receiving, decoding, checking, writing and installing. Prints CPU seconds
per GiB received, the mean over the clients and the cases' repeats, and
the median of the repeats.

    python3 bench/rx_cpu.py --bin base=/tmp/base --bin now=target/release
    bash bench/rx-cpu.sh                       # builds, and a baseline commit
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet_bench as fb  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """utime+stime of a process and its threads, in seconds."""
    try:
        # The command name (field 2) may hold spaces: split after its ')'.
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(rest[11]) + int(rest[12])) / TICK


class Case(fb.Haifu):
    """A fleet whose clients' CPU is read around the broadcast."""

    def __init__(self, *args):
        super().__init__(*args)
        self.pids = {}

    def start(self, role, name):
        p = super().start(role, name)
        if role == "client":
            self.pids[name] = p.pid
        return p

    def broadcast(self, rate, loss):
        d = self.dir
        self.setup(rate, loss, 3)
        dump = lambda: fb.tails(d)
        self.start("master", "master")
        fb.wait_for("master start", lambda: fb.lines_with(d / "master.log", "master started"), 60, dump)
        self.start("relay", "relay-a")
        fb.wait_for("relay", lambda: fb.lines_with(d / "relay-a.log", "connected to the master"), 60, dump)
        for c in self.clients:
            self.start("client", c)
        for c in self.clients:
            fb.wait_for(f"{c} to register",
                        lambda: fb.lines_with(d / "relay-a.log", f"client registered client={c}"), 60, dump)
        fb.wait_for("every client recorded", lambda: self.known_clients() >= len(self.clients), 60, dump)
        busy = fb.wait_quiet(self.a.quiet_wait)
        before = {c: cpu_s(p) for c, p in self.pids.items()}
        perf = None
        if self.a.perf:
            # The first client's profile over the broadcast (user space).
            perf = subprocess.Popen(
                ["perf", "record", "-q", "-F", "999", "-g", "-o", str(self.a.perf),
                 "-p", str(self.pids[self.clients[0]])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stat = subprocess.Popen(
                ["perf", "stat", "-e", "context-switches,cpu-clock,page-faults", "-o",
                 f"{self.a.perf}.stat", "-p", str(self.pids[self.clients[0]])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        out = subprocess.run(
            [str(self.a.bin / "haifu"), "--home", str(self.home), "run", "bench.yaml", "--live", "--json"],
            cwd=d, env=self.env, capture_output=True, text=True, timeout=1800,
        )
        wall = time.time() - t0
        after = {c: cpu_s(p) for c, p in self.pids.items()}
        if perf:
            for p in (perf, stat):
                p.send_signal(fb.signal.SIGINT)
                p.wait(60)
        fb.stop_all()
        if out.returncode != 0:
            raise SystemExit(f"haifu run failed: {out.stderr}\n{dump()}")
        installed = [c for c in self.clients if fb.lines_with(d / f"{c}.log", "installed; completion sent")]
        if len(installed) != len(self.clients):
            raise SystemExit(f"only {installed} installed\n{dump()}")
        bad = [c for c in self.clients
               if fb.sha256(d / f"{c}-root/current/artifact") != self.a.artifact_sha256]
        if bad:
            raise SystemExit(f"installed artifact differs on {bad}")
        gib = self.a.size / (1 << 30)
        per = [(after[c] - before[c]) / gib for c in self.clients]
        return {"s_per_gib": per, "wall_s": wall, "busy_before": busy}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", action="append", required=True, help="NAME=FOLDER (repeatable)")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--rate", type=int, default=400, help="Mbit/s")
    p.add_argument("--losses", default="0,0.05")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quiet-wait", type=float, default=20)
    p.add_argument("--port", type=int, default=33000)
    p.add_argument("--perf", type=Path, help="perf record the first client of each case to this file")
    a = p.parse_args()
    a.size = a.size_mib * fb.MIB
    a.settle_ms = 1500
    a.pidfile = None
    a.work.mkdir(parents=True, exist_ok=True)
    a.artifact = (a.work / "app.bin").resolve()
    fb.make_artifact(a.artifact, a.size, seed=20260101)
    a.artifact_sha256 = fb.sha256(a.artifact)
    builds = [b.split("=", 1) for b in a.bin]
    losses = [float(x) for x in a.losses.split(",")]
    results = {}
    n = 0
    # Builds alternate within each repeat, so a disturbance hits both.
    for rep in range(a.repeat):
        for loss in losses:
            for name, folder in builds:
                a.bin = Path(folder).resolve()
                n += 1
                tag = f"{name}-loss{loss}-{rep}"
                fb.log(f"== {tag}")
                shutil.rmtree(a.work / tag, ignore_errors=True)
                try:
                    r = Case(a, a.work / tag, a.port + 10 * n, f"239.255.{96 + n % 3}.{n % 250 + 1}") \
                        .broadcast(a.rate, loss)
                finally:
                    fb.stop_all()
                    fb.prune(a.work / tag)
                fb.log(f"   s/GiB per client {[round(x, 2) for x in r['s_per_gib']]}, "
                       f"run {r['wall_s']:.1f} s, machine busy before {r['busy_before']:.0%}")
                results.setdefault((name, loss), []).append(statistics.mean(r["s_per_gib"]))
    print(f"\nreceiver CPU s/GiB: {a.size_mib} MiB to {a.clients} clients on loopback multicast, "
          f"{a.rate} Mbit/s, {os.cpu_count()} CPUs; median of {a.repeat} (each the clients' mean)")
    print("| build | " + " | ".join(f"{x:.0%} loss" for x in losses) + " |")
    print("|---|" + "---|" * len(losses))
    for name, _ in builds:
        cells = []
        for loss in losses:
            v = results[(name, loss)]
            cells.append(f"{statistics.median(v):.2f} ({', '.join(f'{x:.2f}' for x in v)})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        fb.stop_all(5)

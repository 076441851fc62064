#!/usr/bin/env python3
"""The relay alone on one core, as one process (issue 13, benchmark 2: "the
relay alone sends >= 1 Gbit/s of carousel on one core"); bench/lan-race.sh
calls this with RELAY_ALONE=1.

The LAN is `lan.sh up 1`, with no tbf, so the link takes whatever the relay
makes. Master and relay in hf0 as in the race (lan_race.HaifuRun), the
master and this driver on one CPU, the relay pinned to another with
`taskset -c`, told to send faster than one core can (--rates). One client,
in hf1 on the master's CPU, registers and is then SIGSTOPped for the whole
run: a round needs a client to wait for (with none the master ends it
before the relay sends a byte), and a stopped one receives nothing, so the
relay works alone (the bridge still floods each frame to hf1, where the
kernel drops it once the stopped client's socket buffer is full). One
round per run: the first pass (each block once, the shipped policy's
proactive share: none in round 1), then the silent client's bound.

Every 10 ms during `haifu run` it samples hf0's eth0 tx bytes and packets
(/proc/RELAY/net/dev: the relay's namespace), the relay's utime+stime
(/proc/RELAY/stat, every thread) and the relay's CPU's counters (/proc/stat
cpuN). The round's sending time runs from the sample before the first
10 ms that carried a burst of the round to the end of the last one, so the
linger, the set-up before the first datagram and control traffic after are
outside it. Per run:
  wire        tx bytes over the sending time (Ethernet header included, as
              the race counts them), and / the artifact
  relay CPU   the relay's CPU seconds over the same window
  per CPU-s   Gbit on the wire / the relay's CPU seconds
  core        the pinned CPU's busy seconds over the window, and its share
              in softirq (the kernel's packet work: veth, bridge)
The relay's own "round sent" line (UDP payload, elapsed including the
linger) is kept beside them. Prints a table of medians and writes --json.
"""

import argparse
import datetime
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet_bench import (  # noqa: E402
    MIB, fields, lines_with, log, make_artifact, sha256, tails, wait_quiet,
)
from lan_race import (  # noqa: E402
    CLK, SEED, SENDER_IF, HaifuRun, fmt, in_ns, med, parse_rate, proc_cpu, prune, table,
)

SAMPLE_S = 0.010
# A sample interval that carried more than this was the round sending
# (64 KiB in 10 ms is 52 Mbit/s); less is control traffic (ARP, IGMP, the
# QUIC link to the stopped client), which may go on after the round.
BURST_BYTES = 64 * 1024


def net_dev(pid, dev):
    """(tx_bytes, tx_packets) of `dev` in the namespace of process `pid`."""
    with open(f"/proc/{pid}/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == dev:
                v = rest.split()
                return int(v[8]), int(v[9])
    raise SystemExit(f"relay_alone: no {dev} in /proc/{pid}/net/dev")


def cpu_line(cpu):
    """(busy, softirq+irq) seconds of one CPU so far (/proc/stat cpuN)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return (sum(v[:8]) - v[3] - v[4]) / CLK, (v[5] + v[6]) / CLK
    raise SystemExit(f"relay_alone: no cpu{cpu} in /proc/stat")


class Sampler(threading.Thread):
    """(time, tx bytes, tx packets, relay CPU s, core busy s, core irq s)
    every SAMPLE_S until stopped."""

    def __init__(self, pid, cpu):
        super().__init__(daemon=True)
        self.pid, self.cpu, self.rows, self.done = pid, cpu, [], threading.Event()

    def sample(self):
        tx, pk = net_dev(self.pid, SENDER_IF)
        busy, irq = cpu_line(self.cpu)
        self.rows.append((time.monotonic(), tx, pk, proc_cpu(self.pid), busy, irq))

    def run(self):
        while not self.done.is_set():
            self.sample()
            time.sleep(SAMPLE_S)
        self.sample()


def sending_window(rows):
    """The samples that bracket the round's datagrams: the one before the
    first interval that carried more than BURST_BYTES, the one ending the
    last such interval."""
    busy = [i for i in range(1, len(rows)) if rows[i][1] - rows[i - 1][1] > BURST_BYTES]
    if not busy:
        return None
    return rows[busy[0] - 1], rows[busy[-1]]


class AloneRun(HaifuRun):
    """lan_race's fleet with one client, stopped; the master and the client
    on --master-cpu, the relay on --relay-cpu."""

    def start(self, ns, role, name):
        cpu = self.a.relay_cpu if role == "relay" else self.a.master_cpu
        cmd = in_ns(ns, ["taskset", "-c", str(cpu), str(self.a.bin / "haifu"), "--home",
                         str(self.home), role, "--config", f"{name}.yaml"])
        return self.procs.start(cmd, self.dir / f"{name}.log", dict(self.env, RUST_LOG="info"), self.dir)

    def run(self):
        a, d = self.a, self.dir
        try:
            self.setup()
            _, relay, clients = self.start_fleet()
            for client in clients.values():
                client.send_signal(signal.SIGSTOP)
            busy = wait_quiet(a.quiet_wait)
            lead = datetime.timedelta(seconds=a.start_lead)
            self.write_workflow(datetime.datetime.now(datetime.timezone.utc) + lead)
            sampler = Sampler(relay.pid, a.relay_cpu)
            sampler.start()
            try:
                cpu0 = proc_cpu(relay.pid)
                out = self.procs.run(
                    [str(a.bin / "haifu"), "--home", str(self.home), "run", "bench.yaml", "--live", "--json"],
                    a.run_timeout, cwd=d, env=self.env)
                cpu1 = proc_cpu(relay.pid)
            finally:
                sampler.done.set()
                sampler.join()
        finally:
            self.procs.stop_all()
        if out.returncode != 0:
            raise SystemExit(f"haifu run failed: {out.stderr.strip()}\n{tails(d)}")
        if cpu1 is None:
            raise SystemExit(f"the relay exited during the run\n{tails(d)}")
        sent = [fields(l) for l in lines_with(d / "relay-a.log", "round sent run=")]
        if len(sent) != 1:
            raise SystemExit(f"expected one \"round sent\" line, found {len(sent)}\n{tails(d)}")
        win = sending_window(sampler.rows)
        if win is None:
            raise SystemExit(f"hf0's {SENDER_IF} carried no round\n{tails(d)}")
        (t0, b0, p0, c0, k0, i0), (t1, b1, p1, c1, k1, i1) = win
        secs, relay_s, core_s = t1 - t0, c1 - c0, k1 - k0
        wire = b1 - b0
        return {
            "configured_mbit": self.rate_mbit, "send_s": secs, "wire_bytes": wire,
            "wire_packets": p1 - p0, "wire_ratio": wire / a.size,
            "wire_gbit_s": wire * 8 / secs / 1e9, "packets_per_s": (p1 - p0) / secs,
            "relay_cpu_s": relay_s, "relay_cpu_share": relay_s / secs,
            "gbit_per_cpu_s": wire * 8 / 1e9 / relay_s if relay_s > 0 else None,
            "core_busy_s": core_s, "core_irq_s": i1 - i0,
            "relay_cpu_run_s": cpu1 - cpu0,
            "round_sent": {k: sent[0].get(k) for k in ("datagrams", "bytes", "elapsed_ms", "ratio")},
            "samples": len(sampler.rows), "busy_before": busy,
        }


def report(a, cases):
    head = ["configured", "wire Gbit/s", "send s", "wire/file", "kpkt/s", "relay CPU s",
            "relay CPU/wall", "Gbit per CPU-s", "core busy s", "core softirq s"]
    rows = []
    for c in cases:
        m = lambda k: med([r[k] for r in c["runs"]])
        rows.append([f"{c['configured_mbit']:g} Mbit/s", fmt(m("wire_gbit_s")), fmt(m("send_s")),
                     fmt(m("wire_ratio"), ".3f"), fmt(m("packets_per_s") / 1e3, ".0f"),
                     fmt(m("relay_cpu_s")), fmt(m("relay_cpu_share")), fmt(m("gbit_per_cpu_s")),
                     fmt(m("core_busy_s")), fmt(m("core_irq_s"))])
    each = "\n".join(
        f"  {c['configured_mbit']:g} Mbit/s run {i}: {r['wire_gbit_s']:.2f} Gbit/s in {r['send_s']:.2f} s, "
        f"relay CPU {r['relay_cpu_s']:.2f} s ({fmt(r['gbit_per_cpu_s'])} Gbit per CPU-s), core busy "
        f"{r['core_busy_s']:.2f} s; relay's line: {r['round_sent']['bytes']} B in "
        f"{r['round_sent']['elapsed_ms']} ms (linger included)"
        for c in cases for i, r in enumerate(c["runs"], 1))
    return (f"\nThe relay alone: {a.size_mib} MiB, one round, its one client stopped, hf0's link uncapped; relay "
            f"pinned to CPU {a.relay_cpu}, master and driver on CPU {a.master_cpu}; medians of {a.runs}; "
            f"{os.cpu_count()} CPUs.\nwire = hf0's eth0 tx bytes over the round's sending time (Ethernet "
            "header included); relay CPU = its utime+stime over that time; core = CPU "
            f"{a.relay_cpu}'s busy time (any process and the kernel's packet work).\n\n{table(head, rows)}\n\n{each}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--pidfile", type=Path)
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--rates", default="2000,4000", help="the relay's configured rates, Mbit/s")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--relay-cpu", type=int, default=1)
    p.add_argument("--master-cpu", type=int, default=0)
    p.add_argument("--start-lead", type=float, default=3.0)
    p.add_argument("--quiet-wait", type=float, default=120)
    p.add_argument("--run-timeout", type=float, default=300)
    p.add_argument("--port", type=int, default=31000)
    p.add_argument("--broadcast-policy", type=Path, required=True)
    p.add_argument("--meta", default="{}")
    a = p.parse_args()
    ncpu = os.cpu_count() or 1
    for c in (a.relay_cpu, a.master_cpu):
        if not 0 <= c < ncpu:
            raise SystemExit(f"relay_alone: CPU {c} does not exist ({ncpu} CPUs)")
    if a.relay_cpu == a.master_cpu:
        raise SystemExit("relay_alone: the relay needs a CPU of its own (--relay-cpu = --master-cpu)")
    # This driver (and what it starts, unless pinned elsewhere) stays off
    # the relay's core.
    os.sched_setaffinity(0, {a.master_cpu})
    a.bin = a.bin.resolve()
    a.size = a.size_mib * MIB
    # lan_race.HaifuRun's fleet with one client and one round; the race's
    # master knobs.
    a.clients, a.rounds, a.retry_policy = 1, 1, None
    a.settle_ms, a.round_grace_secs, a.poll_ms = 1500 + 60 * a.size_mib, 600, 100
    a.master_extra = a.relay_extra = a.client_extra = ""
    a.group = "239.255.77.1"
    a.work.mkdir(parents=True, exist_ok=True)
    a.artifact = (a.work / "app.bin").resolve()
    log(f"artifact: {a.size_mib} MiB (seed {SEED}); relay on CPU {a.relay_cpu}; {a.runs} run(s) per rate")
    make_artifact(a.artifact, a.size, seed=SEED)
    a.artifact_sha256 = sha256(a.artifact)
    cases = []
    for rate in a.rates.split(","):
        mbit = parse_rate(f"{rate}mbit")
        case = {"configured_mbit": mbit, "runs": []}
        for run in range(1, a.runs + 1):
            folder = a.work / f"alone-{mbit:g}-{run}"
            try:
                r = AloneRun(a, folder, mbit, False).run()
            finally:
                prune(folder)
            case["runs"].append(r)
            log(f"[{mbit:g} Mbit/s run {run}/{a.runs}] {r['wire_gbit_s']:.2f} Gbit/s on the wire in "
                f"{r['send_s']:.2f} s, relay CPU {r['relay_cpu_s']:.2f} s, {fmt(r['gbit_per_cpu_s'])} "
                "Gbit per CPU-s")
        cases.append(case)
    out = {**json.loads(a.meta), "mode": "relay-alone", "size": a.size, "runs": a.runs,
           "relay_cpu": a.relay_cpu, "cpus": ncpu, "cases": cases}
    a.json.write_text(json.dumps(out, indent=1))
    print(report(a, cases))
    print(f"(every run: {a.json})")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())

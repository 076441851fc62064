#!/usr/bin/env python3
"""Runs a command; prints its wall seconds, CPU seconds (user + system, of
the command and everything it waited for) and peak RSS in KiB.

bench/measure.py gives wall and RSS; the delta bench also wants CPU, since
on a shared 2-core machine wall time alone mixes the work done with the
waiting for a core.

Usage: timed.py CMD ARGS...
Output (one line, tab-separated): <wall_s> <cpu_s> <peak_rss_kib> <exit_code>
"""
import os
import resource
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    before = os.times()
    t0 = time.perf_counter()
    rc = subprocess.call(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"{wall:.4f}\t{cpu:.4f}\t{peak}\t{rc}")


if __name__ == "__main__":
    main()

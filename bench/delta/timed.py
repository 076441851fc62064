#!/usr/bin/env python3
"""Runs a command; prints its wall seconds, CPU seconds (user + system, of
the command and everything it waited for) and peak RSS in KiB.

bench/measure.py gives wall and RSS; the delta bench also wants CPU, since
on a shared 2-core machine wall time alone mixes the work done with the
waiting for a core.

The peak RSS is GNU time's (`/usr/bin/time -f %M`) when it is installed:
Linux counts the RSS a child had between fork and exec, so a child forked
from this Python process never peaks below Python's own ~14 MiB, which
hides the memory of small runs. Without GNU time it falls back to
getrusage (with that floor).

Usage: timed.py CMD ARGS...
Output (one line, tab-separated): <wall_s> <cpu_s> <peak_rss_kib> <exit_code>
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

GNU_TIME = "/usr/bin/time"


def main():
    args = sys.argv[1:]
    with tempfile.NamedTemporaryFile("r") as rss:
        gnu = shutil.which(GNU_TIME) is not None
        if gnu:
            args = [GNU_TIME, "-f", "%M", "-o", rss.name, *args]
        before = os.times()
        t0 = time.perf_counter()
        rc = subprocess.call(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = os.times()
        cpu = (after.children_user - before.children_user) + (
            after.children_system - before.children_system)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if gnu:
            # The last line: GNU time writes "Command exited with non-zero
            # status N" before it when the command fails.
            lines = rss.read().split()
            peak = int(lines[-1]) if lines and lines[-1].isdigit() else peak
    print(f"{wall:.4f}\t{cpu:.4f}\t{peak}\t{rc}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Runs a command; prints wall seconds and the child's peak RSS in KiB.

Usage: measure.py [--stdout FILE] -- CMD ARGS...
Output (one line, tab-separated): <seconds> <peak_rss_kib> <exit_code>
"""
import resource
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    out = subprocess.DEVNULL
    if args[:1] == ["--stdout"]:
        out = open(args[1], "wb")
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    t0 = time.perf_counter()
    rc = subprocess.call(args, stdout=out, stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"{dt:.4f}\t{peak}\t{rc}")


if __name__ == "__main__":
    main()

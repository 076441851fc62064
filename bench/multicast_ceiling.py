#!/usr/bin/env python3
"""The loopback multicast ceiling of this machine: one sender sends N
1,440-byte datagrams as fast as it can to a group that K receiver processes
drain, doing no other work (no coding, no authentication, no disk). Prints
the wall time and rate for each K in the same run.

On one host the kernel copies every datagram to each receiver in the
sender's context and the receivers share the same CPUs, so this bounds any
multicast tool on this machine, haifu and uftp alike (bench/fleet.sh).

    python3 bench/multicast_ceiling.py            # K = 0, 1, 8; N = 200,000
    python3 bench/multicast_ceiling.py 8 16 --n 400000
"""
import argparse
import multiprocessing as mp
import socket
import time

GROUP, PORT, SIZE = "239.255.77.7", 47777, 1440


def receive(ready, counts, i):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((GROUP, PORT))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1"))
    s.settimeout(1.0)
    ready.set()
    got = 0
    try:
        while True:
            s.recv(2048)
            got += 1
    except socket.timeout:
        pass
    counts[i] = got


def case(k, n):
    counts = mp.Array("q", max(k, 1))
    events, procs = [], []
    for i in range(k):
        e = mp.Event()
        p = mp.Process(target=receive, args=(e, counts, i))
        p.start()
        events.append(e)
        procs.append(p)
    for e in events:
        e.wait()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    d = b"\x5a" * SIZE
    t0 = time.time()
    for _ in range(n):
        s.sendto(d, (GROUP, PORT))
    wall = time.time() - t0
    for p in procs:
        p.join()
    got = min(counts[:k]) if k else n
    return wall, got


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("receivers", nargs="*", type=int, default=[0, 1, 8])
    ap.add_argument("--n", type=int, default=200_000)
    a = ap.parse_args()
    print(f"{a.n} datagrams of {SIZE} B, one sender, {mp.cpu_count()} CPUs")
    print(f"{'receivers':>9} {'wall s':>8} {'Mbit/s':>8} {'min received':>13} {'256 MiB x 1.1 at this rate':>27}")
    base = None
    for k in a.receivers:
        wall, got = case(k, a.n)
        rate = a.n * SIZE * 8 / wall / 1e6
        base = base or rate
        t256 = 256 * 2**20 * 1.1 * 8 / (rate * 1e6)
        print(f"{k:>9} {wall:>8.2f} {rate:>8.0f} {got:>13} {t256:>25.1f} s   ({rate / base:.2f}x the first row)")


if __name__ == "__main__":
    main()

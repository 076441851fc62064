#!/usr/bin/env bash
# Benchmark: `haifu register` of a 1 GiB artifact against the two costs it
# combines, measured alone in the same run on the same (page-cached) file:
#   openssl dgst -sha3-256   (hashing alone)
#   zstd -3                  (compression alone, the level the store uses)
# Prints a table of median seconds, MB/s and peak RSS over RUNS runs, and the
# ratio of haifu's throughput to the slower of the two baselines.
# Targets (issue 2): ratio >= 0.8, haifu peak RSS < 64 MiB.
#
#   bash bench/register.sh            # 1 GiB, 3 runs
#   SIZE_MIB=256 RUNS=5 bash bench/register.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
WORK=${WORK:-$(mktemp -d /tmp/haifu-bench-register.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT

command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }

cargo build --release -q -p haifu-cli
HAIFU=$PWD/target/release/haifu

# A realistic software artifact: the machine's own binaries and libraries,
# concatenated (with a varying header per copy) until SIZE_MIB is reached.
FILE=$WORK/artifact.bin
python3 - "$FILE" "$SIZE_MIB" <<'PY'
import os, sys
path, size = sys.argv[1], int(sys.argv[2]) << 20
srcs = []
for d in ["/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/lib", "/usr/libexec"]:
    for root, _, files in os.walk(d):
        for f in sorted(files):
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 4096:
                srcs.append(p)
written, i = 0, 0
with open(path, "wb") as out:
    while written < size:
        p = srcs[i % len(srcs)]
        try:
            data = open(p, "rb").read()
        except OSError:
            data = b""
        chunk = f"--- {i} {p}\n".encode() + data
        chunk = chunk[: size - written]
        out.write(chunk)
        written += len(chunk)
        i += 1
PY
cat "$FILE" > /dev/null   # page-cache it, so every contender reads from memory

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() { # name, command...
  local name=$1; shift
  local secs=() rss=()
  for _ in $(seq "$RUNS"); do
    read -r s r rc < <(python3 bench/measure.py -- "$@")
    [ "$rc" = 0 ] || { echo "$name failed (exit $rc)" >&2; exit 1; }
    secs+=("$s"); rss+=("$r")
  done
  local s r
  s=$(printf '%s\n' "${secs[@]}" | median)
  r=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  echo "$name $s $r"
}

results=()
results+=("$(run 'openssl-sha3-256' openssl dgst -sha3-256 "$FILE")")
results+=("$(run 'zstd-3' zstd -3 -q -c -f "$FILE" -o /dev/null)")
results+=("$(run 'haifu-register' sh -c "rm -rf '$WORK/home' && '$HAIFU' --home '$WORK/home' register --name bench --version 1.0.0 '$FILE'")")

python3 - "$SIZE_MIB" "${results[@]}" <<'PY'
import sys
size_mb = int(sys.argv[1]) * 1048576 / 1e6
rows = [r.split() for r in sys.argv[2:]]
rate = {n: size_mb / float(s) for n, s, _ in rows}
print(f"register benchmark: {sys.argv[1]} MiB artifact, median of runs, file in page cache\n")
print(f"{'contender':<18} {'seconds':>8} {'MB/s':>8} {'peak RSS MiB':>13}")
for n, s, r in rows:
    print(f"{n:<18} {float(s):>8.2f} {rate[n]:>8.1f} {int(r)/1024:>13.1f}")
slower = min(rate["openssl-sha3-256"], rate["zstd-3"])
ratio = rate["haifu-register"] / slower
peak = int([r for n, _, r in rows if n == "haifu-register"][0]) / 1024
print(f"\nhaifu / slower baseline = {ratio:.2f}x   (target >= 0.80)")
print(f"haifu peak RSS          = {peak:.1f} MiB (target < 64)")
PY

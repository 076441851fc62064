#!/usr/bin/env bash
# Benchmark: the memory haifu's delta maker and applier need for a large
# pair (issue 16: "matching a 1 GiB pair must not need 9 GiB"). The pair is
# generated here (nothing fetched, nothing committed): OLD is SIZE_MIB MiB of
# pseudo-random bytes (AES-CTR keystream, so incompressible and fast to
# make); NEW is OLD with EDITS edits spread over it, each deleting a few
# bytes and inserting a few others, so every address after an edit shifts
# as a rebuilt binary's do.
#
# Above MakeOptions::bsdiff_max_size (512 MiB) the maker tries patch-from
# only, at level 15 at most (LARGE_PATCH_FROM_LEVEL_MAX); at or below it,
# both methods, one after the other. For each side
# of the threshold it prints the pair's size, the delta's size and method,
# create and apply wall/CPU time and peak RSS, and the peak as a multiple
# of the new file.
#
#   touch /work/bench.running; flock -x /work/bench.lock bash bench/delta-large.sh; rm /work/bench.running
#   SIZE_MIB=512 bash bench/delta-large.sh      # just under the bsdiff limit
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
EDITS=${EDITS:-2000}
LEVEL=${LEVEL:-19}
WORK=${WORK:-$(mktemp -d /tmp/haifu-bench-delta-large.XXXXXX)}
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

echo "building delta_tool (release)" >&2
cargo build --release -q -p haifu-delta --example delta_tool
TOOL=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/delta_tool

echo "generating a ${SIZE_MIB} MiB pair with $EDITS edits" >&2
head -c "$((SIZE_MIB << 20))" /dev/zero |
  openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
    -iv 00000000000000000000000000000000 > "$WORK/old"
python3 - "$WORK/old" "$WORK/new" "$EDITS" <<'PY'
import random, sys
old, new, edits = sys.argv[1], sys.argv[2], int(sys.argv[3])
size = __import__("os").path.getsize(old)
rng = random.Random(16)
cuts = sorted(rng.randrange(size) for _ in range(edits))
with open(old, "rb") as src, open(new, "wb") as dst:
    at = 0
    for cut in cuts:
        dst.write(src.read(cut - at))
        skip = rng.randrange(0, 16)
        src.seek(skip, 1)
        dst.write(rng.randbytes(rng.randrange(1, 24)))
        at = cut + skip
    while chunk := src.read(1 << 24):
        dst.write(chunk)
PY

measure() { # command... -> "wall cpu peak_kib"
  local line w c r rc
  line=$(python3 bench/delta/timed.py "$@")
  read -r w c r rc <<<"$line"
  [ "$rc" = 0 ] || { echo "failed (exit $rc): $*" >&2; exit 1; }
  echo "$w $c $r"
}

old_b=$(stat -c %s "$WORK/old")
new_b=$(stat -c %s "$WORK/new")
echo "make (level $LEVEL, both methods where allowed, the smaller kept)" >&2
read -r cw cc cr < <(measure "$TOOL" make --level "$LEVEL" "$WORK/old" "$WORK/new" "$WORK/d")
method=$("$TOOL" header "$WORK/d" | awk '/^method/ {sub(/,$/, "", $2); print $2; exit}')
echo "apply (verified)" >&2
read -r aw ac ar < <(measure "$TOOL" apply "$WORK/old" "$WORK/d" "$WORK/out")
cmp -s "$WORK/new" "$WORK/out" || { echo "applied result differs from new" >&2; exit 1; }
delta_b=$(stat -c %s "$WORK/d")

echo
echo "large pair: old $old_b B, new $new_b B ($EDITS edits), delta $delta_b B, method ${method:-?}"
printf '%-8s %9s %9s %12s %16s\n' step "wall s" "cpu s" "peak MiB" "peak / new file"
for step in make apply; do
  if [ $step = make ]; then w=$cw c=$cc r=$cr; else w=$aw c=$ac r=$ar; fi
  awk -v s=$step -v w="$w" -v c="$c" -v r="$r" -v n="$new_b" \
    'BEGIN { printf "%-8s %9.2f %9.2f %12.1f %15.2fx\n", s, w, c, r / 1024, r * 1024 / n }'
done
awk -v r="$cr" 'BEGIN { gib = r / 1048576; printf "make peak %.2f GiB: %s (issue 16: a 1 GiB pair must not need 9 GiB)\n", gib, (gib < 9 ? "ok" : "MISSED") }'

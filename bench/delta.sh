#!/usr/bin/env bash
# Benchmark: haifu's delta (engine/delta, zstd patch-from in its container)
# against xdelta3 -9, bsdiff/bspatch and zstd --patch-from --ultra -22
# --long=31, on two releases of a real program, in the same run.
#
# The pair: two wheels of a program with a native binary, downloaded from
# PyPI (pip download --no-deps), unpacked and re-packed as deterministic tars
# (bench/delta/artifacts.py): the artifact haifu would distribute.
#
# Prints patch size (and % of the new version), create time and peak RSS,
# apply time (median of RUNS) and peak RSS, and the wire bytes a straggler
# costs by delta against the zstd-compressed full artifact (zstd -3, the
# store's level). Targets (issue 6): haifu's size within 5% of the best of
# the others; haifu's apply at least as fast as the fastest of the others.
#
# haifu's apply always verifies: sha3-256 of the base (against the delta's
# "from") and of the result (against its "to"). The others verify nothing,
# so a second column adds to their apply the one check a client must make
# before installing anyway (openssl dgst -sha3-256 of the result).
# "haifu-L19-known-base" is the client's real path: its installed version's
# digest was computed when it was read from its store, so the base is not
# hashed twice (BaseCheck::Known; the result is still hashed and checked).
#
#   bash bench/delta.sh                                  # ruff 0.6.8 -> 0.6.9
#   PKG=ruff OLD=0.6.9 NEW=0.7.0 RUNS=5 bash bench/delta.sh
#   LEVELS="19 22" bash bench/delta.sh                   # haifu levels to try
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=${PKG:-ruff}
OLD=${OLD:-0.6.8}
NEW=${NEW:-0.6.9}
RUNS=${RUNS:-3}
LEVELS=${LEVELS:-"19 3"}
PLATFORM=${PLATFORM:-manylinux_2_17_x86_64}
WORK=${WORK:-$(mktemp -d /tmp/haifu-bench-delta.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT

need=()
command -v zstd >/dev/null || need+=(zstd)
command -v xdelta3 >/dev/null || need+=(xdelta3)
command -v bsdiff >/dev/null || need+=(bsdiff)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "building delta_tool (release)" >&2
cargo build --release -q -p haifu-delta --example delta_tool
TOOL=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/delta_tool

echo "downloading $PKG $OLD and $NEW" >&2
for v in "$OLD" "$NEW"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --platform "$PLATFORM" \
    --python-version 3.12 -d "$WORK/wheels/$v" "$PKG==$v" >&2
done
python3 bench/delta/artifacts.py "$WORK"/wheels/"$OLD"/*.whl "$WORK"/wheels/"$NEW"/*.whl "$WORK"
A=$WORK/old.tar
B=$WORK/new.tar
cat "$A" "$B" > /dev/null   # page-cache both

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# measure OUT_VAR command...: runs once, fails loudly on a non-zero exit.
measure() {
  local line s r rc
  line=$(python3 bench/measure.py -- "${@:2}")
  read -r s r rc <<<"$line"
  [ "$rc" = 0 ] || { echo "failed (exit $rc): ${*:2}" >&2; exit 1; }
  printf -v "$1" '%s %s' "$s" "$r"
}

rows=()
# contender name, patch file, create command ("" to reuse the patch),
# apply command (writes $WORK/out), verify ("hash" to add a sha3-256 of the
# result to the apply, "self" when the apply verifies already)
run() {
  local name=$1 patch=$2 create=$3 apply=$4 verify=$5 c="0 0" secs=() rss=() vsecs=() a
  echo "  $name" >&2
  [ -z "$create" ] || measure c sh -c "$create"
  for _ in $(seq "$RUNS"); do
    rm -f "$WORK/out"
    measure a sh -c "$apply"
    cmp -s "$WORK/out" "$B" || { echo "$name: applied output differs" >&2; exit 1; }
    secs+=("${a% *}"); rss+=("${a#* }")
    if [ "$verify" = hash ]; then
      measure a sh -c "$apply && openssl dgst -sha3-256 '$WORK/out' >/dev/null"
      vsecs+=("${a% *}")
    fi
  done
  local s r v
  s=$(printf '%s\n' "${secs[@]}" | median)
  r=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  v=$s
  [ "$verify" != hash ] || v=$(printf '%s\n' "${vsecs[@]}" | median)
  rows+=("$name $(stat -c %s "$patch") $c $s $r $v")
}

echo "running contenders" >&2
for level in $LEVELS; do
  run "haifu-L$level" "$WORK/h$level.delta" \
    "'$TOOL' make --level $level '$A' '$B' '$WORK/h$level.delta'" \
    "'$TOOL' apply '$A' '$WORK/h$level.delta' '$WORK/out'" self
done
first=${LEVELS%% *}
BASE_DIGEST=$("$TOOL" digest "$A" 2>/dev/null)
run "haifu-L$first-known-base" "$WORK/h$first.delta" "" \
  "'$TOOL' apply --base-digest $BASE_DIGEST '$A' '$WORK/h$first.delta' '$WORK/out'" self
run "zstd-22-patch-from" "$WORK/z.zst" \
  "zstd -q -f --ultra -22 --long=31 --patch-from='$A' '$B' -o '$WORK/z.zst'" \
  "zstd -q -f -d --long=31 --patch-from='$A' '$WORK/z.zst' -o '$WORK/out'" hash
run "xdelta3-9" "$WORK/x.vcdiff" \
  "xdelta3 -f -9 -e -s '$A' '$B' '$WORK/x.vcdiff'" \
  "xdelta3 -f -d -s '$A' '$WORK/x.vcdiff' '$WORK/out'" hash
run "bsdiff" "$WORK/b.patch" \
  "bsdiff '$A' '$B' '$WORK/b.patch'" \
  "bspatch '$A' '$WORK/out' '$WORK/b.patch'" hash

# The floor of any apply that verifies: sha3-256 of the result alone, with
# haifu's hasher (the delta_tool digest of the new version).
hs=()
for _ in $(seq "$RUNS"); do
  measure a "$TOOL" digest "$B"
  hs+=("${a% *}")
done
HASH_S=$(printf '%s\n' "${hs[@]}" | median)

zstd -q -f -3 "$B" -o "$WORK/full3.zst"
zstd -q -f -19 --long=31 "$B" -o "$WORK/full19.zst"
FULL3=$(stat -c %s "$WORK/full3.zst")
FULL19=$(stat -c %s "$WORK/full19.zst")

python3 - "$PKG" "$OLD" "$NEW" "$(stat -c %s "$A")" "$(stat -c %s "$B")" "$FULL3" "$FULL19" "$RUNS" "$HASH_S" "${rows[@]}" <<'PY'
import sys
pkg, old, new, a, b, full3, full19, runs, hash_s = sys.argv[1:10]
a, b, full3, full19, hash_s = int(a), int(b), int(full3), int(full19), float(hash_s)
rows = [r.split() for r in sys.argv[10:]]
print(f"delta benchmark: {pkg} {old} -> {new} (wheels unpacked, re-packed as tar)")
print(f"old {a:,} B, new {b:,} B; full artifact zstd -3 (store level) {full3:,} B, zstd -19 {full19:,} B")
print(f"apply: median of {runs} runs, output compared with the new version; "
      "'+sha3' = apply plus sha3-256 of the result (haifu's apply includes it)\n")
hdr = (f"{'contender':<24} {'patch B':>11} {'% new':>6} {'create s':>9} {'create MiB':>10} "
       f"{'apply s':>8} {'+sha3 s':>8} {'apply MiB':>9}")
print(hdr)
print("-" * len(hdr))
data = {}
for name, size, cs, cr, as_, ar, vs in rows:
    size, cs, cr, as_, ar, vs = int(size), float(cs), int(cr), float(as_), int(ar), float(vs)
    data[name] = (size, as_, vs)
    create = f"{cs:>9.2f} {cr/1024:>10.1f}" if cs > 0 else f"{'(same)':>9} {'':>10}"
    print(f"{name:<24} {size:>11,} {100*size/b:>6.2f} {create} {as_:>8.3f} {vs:>8.3f} {ar/1024:>9.1f}")
others = {n: v for n, v in data.items() if not n.startswith("haifu")}
best_name = min(others, key=lambda n: others[n][0])
fast_name = min(others, key=lambda n: others[n][1])
vfast_name = min(others, key=lambda n: others[n][2])
best, fastest, vfastest = others[best_name][0], others[fast_name][1], others[vfast_name][2]
print()
for n, (size, secs, vsecs) in data.items():
    if not n.startswith("haifu"):
        continue
    ok = lambda c: "ok" if c else "MISSED"
    print(f"{n}:")
    print(f"  size  {size/best:.3f}x best other ({best_name})            [{ok(size <= best * 1.05)}: target <= 1.05x]")
    print(f"  apply {secs/fastest:.2f}x fastest other ({fast_name}, verifying nothing) [{ok(secs <= fastest)}: target <= 1.00x]")
    print(f"        {secs/vfastest:.2f}x fastest other + sha3 of its result ({vfast_name})")
    print(f"        floor: sha3-256 of the result alone takes {hash_s:.3f} s = {hash_s/fastest:.2f}x "
          f"{fast_name}'s whole apply; an apply that verifies its result cannot go below it")
    kind = "delta" if size < full3 else "full (delta not smaller)"
    print(f"  wire  delta {size:,} B vs full {full3:,} B "
          f"({100*size/full3:.2f}% of full, saves {full3-size:,} B) -> sends {kind}")
PY

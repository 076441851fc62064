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
# apply time and CPU (medians of RUNS) and peak RSS, then the ratios that
# issue 6 asks for, each against baselines measured in the same run:
#   size   haifu patch / the best of the others          (target <= 1.05)
#   apply  haifu apply / the fastest bare apply          (target <= 1.00)
#          haifu apply / the fastest apply + sha3-256 check of its result
#          haifu apply / the floor (sha3-256 of the result alone)
#   wire   bytes a straggler costs by delta vs the zstd -3 full artifact
#          (the store's level; zstd -19 --long shown too)
#
# Fairness. Every apply row is one fresh process that reads the base and
# the patch from files and writes the result to a file (page cache): process
# start and file I/O are paid by every contender. The applies run
# interleaved (run 1 of every contender, then run 2, ...) so a burst of load
# from other work on the machine hits all of them alike; the load average
# is printed before and after. Times are wall seconds; "cpu s" (user +
# system) shows how much of a wall time was work rather than waiting for a
# core.
#
# haifu's apply always verifies the result: sha3-256 against the delta's
# "to", hashed on a second thread while zstd decodes, so its time is about
# max(decode, hash), not the sum. "haifu-L*" also hashes the base (against
# "from", on a third thread); "haifu-L19-known-base" is the client's real
# path: its installed version's digest was computed when it was read from
# its store, so the base is not hashed twice (BaseCheck::Known; the result
# is still hashed and checked). The others verify nothing, so "+sha3 s"
# adds to their apply the one check a client must make before installing
# anyway: `openssl dgst -sha3-256` of the result (OpenSSL's assembly
# Keccak, about 1.25x faster than haifu's pure-Rust one on this machine:
# that favours the others). The floor line is `delta_tool digest` of the new
# version (process start, read, hash): no apply that verifies its result
# with haifu's hasher can be faster.
#
#   bash bench/delta.sh                                  # ruff 0.6.8 -> 0.6.9
#   PKG=ruff OLD=0.6.9 NEW=0.7.0 RUNS=7 bash bench/delta.sh
#   LEVELS="19 22" bash bench/delta.sh                   # haifu levels to try
#   RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR=/tmp/t-v3 bash bench/delta.sh
#                                  # a client build for x86-64-v3 (faster Keccak)
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=${PKG:-ruff}
OLD=${OLD:-0.6.8}
NEW=${NEW:-0.6.9}
RUNS=${RUNS:-5}
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

# measure OUT_VAR command...: runs once, fails loudly on a non-zero exit;
# OUT_VAR gets "wall cpu peak_rss_kib".
measure() {
  local _line _w _c _r _rc
  _line=$(python3 bench/delta/timed.py "${@:2}")
  read -r _w _c _r _rc <<<"$_line"
  [ "$_rc" = 0 ] || { echo "failed (exit $_rc): ${*:2}" >&2; exit 1; }
  printf -v "$1" '%s %s %s' "$_w" "$_c" "$_r"
}

T=$WORK/times
mkdir -p "$T"
names=()
declare -A patch_of apply_of verify_of create_of
# contender name, patch file, create command ("" to reuse the patch),
# apply command (writes $WORK/out), verify ("hash" to time the apply plus a
# sha3-256 of the result, "self" when the apply verifies already)
contender() {
  names+=("$1")
  patch_of[$1]=$2
  create_of[$1]=$3
  apply_of[$1]=$4
  verify_of[$1]=$5
}

for level in $LEVELS; do
  contender "haifu-L$level" "$WORK/h$level.delta" \
    "'$TOOL' make --level $level '$A' '$B' '$WORK/h$level.delta'" \
    "'$TOOL' apply '$A' '$WORK/h$level.delta' '$WORK/out'" self
done
first=${LEVELS%% *}
contender "haifu-L$first-known-base" "$WORK/h$first.delta" "" \
  "'$TOOL' apply --base-digest \$BASE_DIGEST '$A' '$WORK/h$first.delta' '$WORK/out'" self
contender "zstd-22-patch-from" "$WORK/z.zst" \
  "zstd -q -f --ultra -22 --long=31 --patch-from='$A' '$B' -o '$WORK/z.zst'" \
  "zstd -q -f -d --long=31 --patch-from='$A' '$WORK/z.zst' -o '$WORK/out'" hash
contender "xdelta3-9" "$WORK/x.vcdiff" \
  "xdelta3 -f -9 -e -s '$A' '$B' '$WORK/x.vcdiff'" \
  "xdelta3 -f -d -s '$A' '$WORK/x.vcdiff' '$WORK/out'" hash
contender "bsdiff" "$WORK/b.patch" \
  "bsdiff '$A' '$B' '$WORK/b.patch'" \
  "bspatch '$A' '$WORK/out' '$WORK/b.patch'" hash

BASE_DIGEST=$("$TOOL" digest "$A" 2>/dev/null)
export BASE_DIGEST

echo "creating patches" >&2
for n in "${names[@]}"; do
  c="0 0 0"
  if [ -n "${create_of[$n]}" ]; then
    echo "  $n" >&2
    measure c sh -c "${create_of[$n]}"
  fi
  echo "$c" > "$T/$n.create"
done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "applying, $RUNS interleaved runs" >&2
for run in $(seq "$RUNS"); do
  echo "  run $run" >&2
  for n in "${names[@]}"; do
    rm -f "$WORK/out"
    measure a sh -c "${apply_of[$n]}"
    cmp -s "$WORK/out" "$B" || { echo "$n: applied output differs" >&2; exit 1; }
    echo "$a" >> "$T/$n.apply"
    if [ "${verify_of[$n]}" = hash ]; then
      rm -f "$WORK/out"
      measure a sh -c "${apply_of[$n]} && openssl dgst -sha3-256 '$WORK/out' >/dev/null"
      echo "$a" >> "$T/$n.verify"
    fi
  done
  # The floors: sha3-256 of the new version alone, haifu's hasher and
  # OpenSSL's (process start and reading the file included, as above).
  measure a "$TOOL" digest "$B"
  echo "$a" >> "$T/floor.haifu"
  measure a openssl dgst -sha3-256 "$B"
  echo "$a" >> "$T/floor.openssl"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

zstd -q -f -3 "$B" -o "$WORK/full3.zst"
zstd -q -f -19 --long=31 "$B" -o "$WORK/full19.zst"

python3 - "$T" "$PKG" "$OLD" "$NEW" "$(stat -c %s "$A")" "$(stat -c %s "$B")" \
  "$(stat -c %s "$WORK/full3.zst")" "$(stat -c %s "$WORK/full19.zst")" "$RUNS" \
  "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc)" \
  "$(for n in "${names[@]}"; do printf '%s=%s=%s ' "$n" "$(stat -c %s "${patch_of[$n]}")" "${verify_of[$n]}"; done)" <<'PY'
import statistics
import sys

(times, pkg, old, new, a, b, full3, full19, runs, load0, load1, cores, spec) = sys.argv[1:14]
a, b, full3, full19 = int(a), int(b), int(full3), int(full19)


def rows(path):
    with open(path) as f:
        return [tuple(float(x) for x in line.split()) for line in f if line.strip()]


def med(path, col):
    return statistics.median(r[col] for r in rows(path))


names, data = [], {}
for item in spec.split():
    name, size, verify = item.split("=")
    names.append(name)
    cw, cc, cr = rows(f"{times}/{name}.create")[0]
    apply_path = f"{times}/{name}.apply"
    verify_path = f"{times}/{name}.verify" if verify == "hash" else apply_path
    data[name] = dict(
        size=int(size), create=cw, create_rss=cr,
        wall=med(apply_path, 0), cpu=med(apply_path, 1),
        rss=max(r[2] for r in rows(apply_path)),
        vwall=med(verify_path, 0), vcpu=med(verify_path, 1))
floor = med(f"{times}/floor.haifu", 0)
floor_cpu = med(f"{times}/floor.haifu", 1)
ofloor = med(f"{times}/floor.openssl", 0)

print(f"delta benchmark: {pkg} {old} -> {new} (wheels unpacked, re-packed as tar)")
print(f"old {a:,} B, new {b:,} B; full artifact zstd -3 (store level) {full3:,} B, "
      f"zstd -19 --long {full19:,} B")
print(f"apply: median of {runs} interleaved runs, output compared with the new version; "
      f"'+sha3' = apply, then sha3-256 of the result (haifu's apply includes it)")
print(f"machine: {cores} cores, load average {load0} before the applies, {load1} after\n")
hdr = (f"{'contender':<24} {'patch B':>11} {'% new':>6} {'create s':>9} {'create MiB':>10} "
       f"{'apply s':>8} {'cpu s':>6} {'+sha3 s':>8} {'cpu s':>6} {'apply MiB':>9}")
print(hdr)
print("-" * len(hdr))
for n in names:
    d = data[n]
    create = (f"{d['create']:>9.2f} {d['create_rss']/1024:>10.1f}" if d["create"] > 0
              else f"{'(same)':>9} {'':>10}")
    print(f"{n:<24} {d['size']:>11,} {100*d['size']/b:>6.2f} {create} {d['wall']:>8.3f} "
          f"{d['cpu']:>6.3f} {d['vwall']:>8.3f} {d['vcpu']:>6.3f} {d['rss']/1024:>9.1f}")
print(f"{'floor: sha3-256 of new':<24} {'':>11} {'':>6} {'':>9} {'':>10} {floor:>8.3f} "
      f"{floor_cpu:>6.3f}   (delta_tool digest; openssl dgst -sha3-256: {ofloor:.3f} s)")

others = [n for n in names if not n.startswith("haifu")]
best = min(others, key=lambda n: data[n]["size"])
fast = min(others, key=lambda n: data[n]["wall"])
vfast = min(others, key=lambda n: data[n]["vwall"])
B, F, V = data[best]["size"], data[fast]["wall"], data[vfast]["vwall"]
ok = lambda c: "ok" if c else "MISSED"
print(f"\nratios, all against figures of this run (best size: {best}; fastest bare "
      f"apply: {fast} {F:.3f} s; fastest apply + sha3: {vfast} {V:.3f} s)")
print(f"  floor (sha3-256 of the result alone) = {floor/F:.2f}x the fastest bare apply: "
      + ("no apply that verifies its result with haifu's hasher can meet the apply target here"
         if floor > F else "the apply target is within reach"))
for n in names:
    if not n.startswith("haifu"):
        continue
    d = data[n]
    print(f"{n}:")
    print(f"  size   {d['size']/B:.3f}x best other ({best})   [{ok(d['size'] <= B * 1.05)}: target <= 1.05x]")
    print(f"  apply  {d['wall']/F:.2f}x fastest bare apply ({fast}, verifying nothing)   "
          f"[{ok(d['wall'] <= F)}: target <= 1.00x]")
    print(f"         {d['wall']/V:.2f}x fastest apply + sha3-256 of its result ({vfast})")
    print(f"         {d['wall']/floor:.2f}x the floor (sha3-256 of the result alone); "
          f"cpu {d['cpu']:.3f} s vs {data[fast]['cpu']:.3f} s")
    kind = "delta" if d["size"] < full3 else "full (delta not smaller)"
    print(f"  wire   delta {d['size']:,} B vs full zstd -3 {full3:,} B = {100*d['size']/full3:.2f}% "
          f"(saves {full3-d['size']:,} B per straggler; {100*d['size']/full19:.2f}% of zstd -19) "
          f"-> sends {kind}")
PY

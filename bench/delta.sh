#!/usr/bin/env bash
# Benchmark: haifu's delta (engine/delta: zstd patch-from and the bsdiff
# method, the smaller kept) against bsdiff/bspatch, xdelta3 -9 and zstd
# --patch-from at -19 and --ultra -22 (--long=31), on several pairs of real
# artifacts fetched by this script (nothing is committed), in one run and
# one table.
#
# The pairs (PAIRS, default all five):
#   libcrypto  native: libcrypto.so.3 from two Debian builds of libssl3
#              (apt-get download; the two newest versions apt knows, or
#              LIBSSL_OLD / LIBSSL_NEW)
#   rust-bin   native: a Rust binary built here from two releases with
#              `cargo install --locked` and stripped (RUSTBIN_CRATE,
#              default hexyl, RUSTBIN_OLD -> RUSTBIN_NEW; a minute or two
#              of compiling each, before that pair's measurements)
#   ruff-bin   native: the stripped Rust binary `ruff` from two releases'
#              wheels (PyPI, pip download --no-deps), RUFF_OLD -> RUFF_NEW
#   ruff       archive: the same wheels unpacked and re-packed as
#              deterministic tars (bench/delta/artifacts.py), the artifact
#              haifu would distribute
#   django     source: two releases of Django's pure-Python wheel, re-packed
#              as tars the same way (DJANGO_OLD -> DJANGO_NEW)
#
# Per pair and contender: patch size (and % of the new file), create time
# and peak RSS, apply time and CPU (median of RUNS interleaved runs) and
# peak RSS. haifu's apply always verifies its result (sha3-256 against the
# delta's target, hashed on a second thread while decoding); "haifu-L19"
# also hashes the base (on a third thread), "haifu-known-base" is the
# client's real path (BaseCheck::Known: the installed version's digest is
# known from its store, the result is still hashed and checked). The others verify nothing, so "+sha3 s" adds to their
# apply the check a client must make before installing anyway: `openssl
# dgst -sha3-256` of the result (OpenSSL's assembly Keccak, faster than
# haifu's pure-Rust one: that favours the others).
#
# Targets (issue 16), each against figures of the same run:
#   size    native pairs: haifu <= bsdiff; archive and source pairs:
#           haifu <= 1.03 x zstd -22 --patch-from
#   apply   haifu (verified) <= 1.5 x bare `zstd -d --patch-from`, and
#           <= 0.5 x bspatch
#   memory  haifu's create peak RSS <= 8 x the new file (below the bsdiff
#           size limit, 512 MiB); also printed net of delta_tool's own RSS
#           when idle (a constant that dominates on small files)
#
# Every apply is one fresh process that reads the base and the patch from
# files and writes the result to a file (page cache). Applies run
# interleaved (run 1 of every contender, then run 2...) so load from other
# work on the machine hits all alike; the load average is printed. Run it
# under `flock /work/bench.lock` on a shared machine.
#
#   flock /work/bench.lock bash bench/delta.sh
#   PAIRS="libcrypto ruff-bin" RUNS=5 bash bench/delta.sh
#   WORK=/tmp/pairs bash bench/delta.sh   # keeps the pairs for the next run
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${PAIRS:-"libcrypto rust-bin ruff-bin ruff django"}
RUNS=${RUNS:-3}
LEVEL=${LEVEL:-19}
RUFF_OLD=${RUFF_OLD:-0.6.8}
RUFF_NEW=${RUFF_NEW:-0.6.9}
RUSTBIN_CRATE=${RUSTBIN_CRATE:-hexyl}
RUSTBIN_OLD=${RUSTBIN_OLD:-0.16.0}
RUSTBIN_NEW=${RUSTBIN_NEW:-0.17.0}
DJANGO_OLD=${DJANGO_OLD:-5.0.6}
DJANGO_NEW=${DJANGO_NEW:-5.0.7}
PLATFORM=${PLATFORM:-manylinux_2_17_x86_64}
# WORK: where the pairs are fetched; a given WORK is kept, and pairs
# already in it are not fetched (or built) again.
if [ -n "${WORK:-}" ]; then
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/haifu-bench-delta.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
fi

need=()
command -v zstd >/dev/null || need+=(zstd)
command -v xdelta3 >/dev/null || need+=(xdelta3)
command -v bsdiff >/dev/null || need+=(bsdiff)
command -v openssl >/dev/null || need+=(openssl)
command -v dpkg-deb >/dev/null || need+=(dpkg)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "building delta_tool (release)" >&2
cargo build --release -q -p haifu-delta --example delta_tool
TOOL=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/delta_tool

# ---- the pairs: each fetch_X fills $WORK/X/old and $WORK/X/new.
wheels() { # name version dir [--only-binary platform args]
  local name=$1 v=$2 dir=$3
  [ -n "$(ls "$dir" 2>/dev/null)" ] && return
  if [ "$name" = django ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$dir" "$name==$v" >&2
  else
    python3 -m pip download -q --no-deps --only-binary=:all: --platform "$PLATFORM" \
      --python-version 3.12 -d "$dir" "$name==$v" >&2
  fi
}
fetch_libcrypto() {
  local old=${LIBSSL_OLD:-} new=${LIBSSL_NEW:-} d=$WORK/libcrypto
  if [ -z "$old" ] || [ -z "$new" ]; then
    [ -n "$(apt-cache madison libssl3 2>/dev/null)" ] || apt-get update -qq
    read -r new old < <(apt-cache madison libssl3 | awk '{print $3}' | sort -rV | uniq | head -2 | tr '\n' ' '; echo)
  fi
  mkdir -p "$d/deb"
  (cd "$d/deb" && apt-get download -q "libssl3=$old" "libssl3=$new" >/dev/null 2>&1)
  for side in old new; do
    local v; [ $side = old ] && v=$old || v=$new
    mkdir -p "$d/x-$side"
    dpkg-deb -x "$d"/deb/libssl3_"${v//:/%3a}"_*.deb "$d/x-$side"
    cp "$d/x-$side/usr/lib/x86_64-linux-gnu/libcrypto.so.3" "$d/$side"
  done
  echo "libcrypto.so.3 (Debian libssl3 $old -> $new)" > "$d/label"
}
fetch_rust-bin() {
  local d=$WORK/rust-bin v
  mkdir -p "$d"
  for v in "$RUSTBIN_OLD" "$RUSTBIN_NEW"; do
    cargo install -q --locked --root "$d/$v" --target-dir "$d/target" \
      "$RUSTBIN_CRATE@$v" >&2
  done
  strip -o "$d/old" "$d/$RUSTBIN_OLD/bin/$RUSTBIN_CRATE"
  strip -o "$d/new" "$d/$RUSTBIN_NEW/bin/$RUSTBIN_CRATE"
  rm -rf "$d/target"
  echo "$RUSTBIN_CRATE (Rust, cargo install --locked, stripped) $RUSTBIN_OLD -> $RUSTBIN_NEW" > "$d/label"
}
fetch_ruff-bin() {
  local d=$WORK/ruff-bin
  mkdir -p "$d"
  wheels ruff "$RUFF_OLD" "$WORK/wheels/ruff-$RUFF_OLD"
  wheels ruff "$RUFF_NEW" "$WORK/wheels/ruff-$RUFF_NEW"
  python3 - "$WORK"/wheels/ruff-"$RUFF_OLD"/*.whl "$d/old" "$WORK"/wheels/ruff-"$RUFF_NEW"/*.whl "$d/new" <<'PY'
import sys, zipfile
for wheel, out in zip(sys.argv[1::2], sys.argv[2::2]):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".data/scripts/ruff"))
        open(out, "wb").write(z.read(name))
PY
  echo "ruff binary (stripped Rust) $RUFF_OLD -> $RUFF_NEW" > "$d/label"
}
fetch_ruff() {
  local d=$WORK/ruff
  wheels ruff "$RUFF_OLD" "$WORK/wheels/ruff-$RUFF_OLD"
  wheels ruff "$RUFF_NEW" "$WORK/wheels/ruff-$RUFF_NEW"
  python3 bench/delta/artifacts.py "$WORK"/wheels/ruff-"$RUFF_OLD"/*.whl \
    "$WORK"/wheels/ruff-"$RUFF_NEW"/*.whl "$d"
  mv "$d/old.tar" "$d/old"; mv "$d/new.tar" "$d/new"
  echo "ruff wheel as tar $RUFF_OLD -> $RUFF_NEW" > "$d/label"
}
fetch_django() {
  local d=$WORK/django
  wheels django "$DJANGO_OLD" "$WORK/wheels/django-$DJANGO_OLD"
  wheels django "$DJANGO_NEW" "$WORK/wheels/django-$DJANGO_NEW"
  python3 bench/delta/artifacts.py "$WORK"/wheels/django-"$DJANGO_OLD"/*.whl \
    "$WORK"/wheels/django-"$DJANGO_NEW"/*.whl "$d"
  mv "$d/old.tar" "$d/old"; mv "$d/new.tar" "$d/new"
  echo "Django wheel as tar (Python source) $DJANGO_OLD -> $DJANGO_NEW" > "$d/label"
}
declare -A KIND=([libcrypto]=native [rust-bin]=native [ruff-bin]=native [ruff]=archive [django]=source)

# measure OUT_VAR command...: runs once, fails loudly on a non-zero exit;
# OUT_VAR gets "wall cpu peak_rss_kib".
measure() {
  local _line _w _c _r _rc
  _line=$(python3 bench/delta/timed.py "${@:2}")
  read -r _w _c _r _rc <<<"$_line"
  [ "$_rc" = 0 ] || { echo "failed (exit $_rc): ${*:2}" >&2; exit 1; }
  printf -v "$1" '%s %s %s' "$_w" "$_c" "$_r"
}

RESULTS=$WORK/results
: > "$RESULTS"
# delta_tool's own peak RSS doing next to nothing: what every haifu
# process costs before it holds a byte of the pair.
echo x > "$WORK/idle"
measure IDLE "$TOOL" digest "$WORK/idle"
IDLE_KIB=${IDLE##* }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for pair in $PAIRS; do
  if [ -s "$WORK/$pair/old" ] && [ -s "$WORK/$pair/new" ] && [ -s "$WORK/$pair/label" ]; then
    echo "pair $pair: already in $WORK" >&2
  else
    echo "pair $pair: fetching" >&2
    "fetch_$pair"
  fi
  P=$WORK/$pair
  A=$P/old
  B=$P/new
  T=$P/times
  mkdir -p "$T"
  cat "$A" "$B" > /dev/null   # page-cache both
  names=()
  declare -A patch_of=() apply_of=() create_of=() verify_of=()
  contender() { names+=("$1"); patch_of[$1]=$2; create_of[$1]=$3; apply_of[$1]=$4; verify_of[$1]=$5; }
  contender "haifu-L$LEVEL" "$P/h.delta" \
    "'$TOOL' make --level $LEVEL '$A' '$B' '$P/h.delta'" \
    "'$TOOL' apply '$A' '$P/h.delta' '$P/out'" self
  # The client's real path: its installed version's digest was computed
  # when it was read from its store, so the base is not hashed again (the
  # result still is).
  base_digest=$("$TOOL" digest "$A" 2>/dev/null)
  contender "haifu-known-base" "$P/h.delta" "" \
    "'$TOOL' apply --base-digest $base_digest '$A' '$P/h.delta' '$P/out'" self
  contender "zstd-19-patch-from" "$P/z19.zst" \
    "zstd -q -f -19 --long=31 --patch-from='$A' '$B' -o '$P/z19.zst'" \
    "zstd -q -f -d --long=31 --patch-from='$A' '$P/z19.zst' -o '$P/out'" hash
  contender "zstd-22-patch-from" "$P/z22.zst" \
    "zstd -q -f --ultra -22 --long=31 --patch-from='$A' '$B' -o '$P/z22.zst'" \
    "zstd -q -f -d --long=31 --patch-from='$A' '$P/z22.zst' -o '$P/out'" hash
  contender "xdelta3-9" "$P/x.vcdiff" \
    "xdelta3 -f -9 -e -s '$A' '$B' '$P/x.vcdiff'" \
    "xdelta3 -f -d -s '$A' '$P/x.vcdiff' '$P/out'" hash
  contender "bsdiff" "$P/b.patch" \
    "bsdiff '$A' '$B' '$P/b.patch'" \
    "bspatch '$A' '$P/out' '$P/b.patch'" hash
  for n in "${names[@]}"; do
    c="0 0 0"
    if [ -n "${create_of[$n]}" ]; then
      echo "  create $n" >&2
      measure c sh -c "${create_of[$n]}"
    fi
    echo "$c" > "$T/$n.create"
  done
  method=$("$TOOL" header "$P/h.delta" | sed -n 's/^method \([a-z-]*\),.*/\1/p')
  for run in $(seq "$RUNS"); do
    echo "  apply run $run" >&2
    for n in "${names[@]}"; do
      rm -f "$P/out"
      measure a sh -c "${apply_of[$n]}"
      cmp -s "$P/out" "$B" || { echo "$pair $n: applied output differs" >&2; exit 1; }
      echo "$a" >> "$T/$n.apply"
      if [ "${verify_of[$n]}" = hash ]; then
        rm -f "$P/out"
        measure a sh -c "${apply_of[$n]} && openssl dgst -sha3-256 '$P/out' >/dev/null"
        echo "$a" >> "$T/$n.verify"
      fi
    done
    # The floor: sha3-256 of the new file alone (process start and reading
    # it included), with haifu's hasher: no apply that verifies its result
    # can be faster.
    measure a "$TOOL" digest "$B"
    echo "$a" >> "$T/floor"
  done
  for n in "${names[@]}"; do
    echo "$pair ${KIND[$pair]} $n $(stat -c %s "${patch_of[$n]}") ${verify_of[$n]} $T $(stat -c %s "$A") $(stat -c %s "$B") $method" >> "$RESULTS"
  done
  cp "$P/label" "$WORK/label.$pair"
  rm -f "$P/out"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$RESULTS" "$WORK" "$RUNS" "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc)" "$IDLE_KIB" <<'PY'
import statistics
import sys

results, work, runs, load0, load1, cores, idle = sys.argv[1:8]
idle = float(idle)


def rows(path):
    with open(path) as f:
        return [tuple(float(x) for x in line.split()) for line in f if line.strip()]


def med(path, col):
    return statistics.median(r[col] for r in rows(path))


pairs = {}
for line in open(results):
    pair, kind, name, size, verify, times, a, b, method = line.split()
    cw, cc, cr = rows(f"{times}/{name}.create")[0]
    ap = f"{times}/{name}.apply"
    vp = f"{times}/{name}.verify" if verify == "hash" else ap
    p = pairs.setdefault(pair, dict(kind=kind, a=int(a), b=int(b), method=method, c={}))
    p["c"][name] = dict(size=int(size), create=cw, crss=cr, wall=med(ap, 0), cpu=med(ap, 1), times=times,
                        rss=max(r[2] for r in rows(ap)), vwall=med(vp, 0))

print(f"delta benchmark: median of {runs} interleaved applies, output compared with the new file;")
print("'+sha3 s' = apply then sha3-256 of the result (haifu's apply includes its check)")
print(f"machine: {cores} cores, load average {load0} before, {load1} after\n")
hdr = (f"{'pair':<10} {'contender':<20} {'patch B':>11} {'% new':>6} {'create s':>9} "
       f"{'create MiB':>10} {'apply s':>8} {'+sha3 s':>8} {'apply MiB':>9}")
print(hdr)
print("-" * len(hdr))
for pair, p in pairs.items():
    label = open(f"{work}/label.{pair}").read().strip()
    print(f"{pair}: {label}; {p['kind']}; old {p['a']:,} B, new {p['b']:,} B; "
          f"haifu chose {p['method']}")
    for n, d in p["c"].items():
        create = (f"{d['create']:>9.2f} {d['crss']/1024:>10.1f}" if d["create"] > 0
                  else f"{'(same)':>9} {'':>10}")
        print(f"{pair:<10} {n:<20} {d['size']:>11,} {100*d['size']/p['b']:>6.2f} {create} "
              f"{d['wall']:>8.3f} {d['vwall']:>8.3f} {d['rss']/1024:>9.1f}")

ok = lambda c: "ok" if c else "MISSED"
print("\ntargets (issue 16), against figures of the same run:")
for pair, p in pairs.items():
    c = p["c"]
    h = next(d for n, d in c.items() if n.startswith("haifu-L"))
    k = c["haifu-known-base"]
    if p["kind"] == "native":
        r = h["size"] / c["bsdiff"]["size"]
        size = f"size {r:.3f}x bsdiff [{ok(r <= 1.0)}: <= 1.00]"
    else:
        r = h["size"] / c["zstd-22-patch-from"]["size"]
        size = f"size {r:.3f}x zstd -22 [{ok(r <= 1.03)}: <= 1.03]"
    za = c["zstd-22-patch-from"]["wall"]
    floor = med(f"{c[next(iter(c))]['times']}/floor", 0)
    ba = c["bsdiff"]["wall"]
    mem = h["crss"] * 1024 / p["b"]
    net = (h["crss"] - idle) * 1024 / p["b"]
    print(f"  {pair:<10} {size}; create memory {mem:.1f}x new [{ok(mem <= 8)}: <= 8], "
          f"{net:.1f}x net of delta_tool's idle {idle/1024:.1f} MiB")
    print(f"  {'':<10} floor: sha3-256 of the new file alone {floor:.3f} s = "
          f"{floor/za:.2f}x bare zstd -d, {floor/ba:.2f}x bspatch")
    for what, d in (("known base", k), ("hashing the base", h)):
        print(f"  {'':<10} apply ({what}) {d['wall']/za:.2f}x bare zstd -d --patch-from "
              f"[{ok(d['wall'] <= 1.5*za)}: <= 1.5], {d['wall']/ba:.2f}x bspatch "
              f"[{ok(d['wall'] <= 0.5*ba)}: <= 0.5]")
PY

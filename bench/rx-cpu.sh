#!/usr/bin/env bash
# Receiver CPU per GiB (issue 13, "a receiver that keeps up"): one broadcast
# on loopback multicast to CLIENTS clients, each client's utime+stime over
# the round, per GiB received, at each loss of LOSSES (the clients' seeded
# testing.drop_datagrams), for the working tree and, with BASE_REV, a
# baseline commit in the same run (the builds alternate case by case, so a
# disturbance hits both). See bench/rx_cpu.py for what is measured.
#
#   bash bench/rx-cpu.sh                          # the working tree only
#   BASE_REV=19155a8 bash bench/rx-cpu.sh         # that commit against it
#   PERF=/tmp/rx.data bash bench/rx-cpu.sh        # also perf the first client
# Knobs: SIZE_MIB (64), CLIENTS (2), RATE (400 Mbit/s), LOSSES (0,0.05),
# REPEAT (3), QUIET_WAIT (20 s for the CPUs to be idle before a case),
# WORK (a new /tmp folder).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-$(mktemp -d /tmp/haifu-rx-cpu.XXXXXX)}
mkdir -p "$WORK"
PROFILE=(--config 'profile.rx-bench.inherits="release"' --profile rx-bench)
PKGS=(-p haifu-cli -p haifu-transport-multicast -p haifu-transport-quic)

# A release build of a source folder, its three files copied to $2.
build() {
  (cd "$1" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$1/target} cargo build -q "${PROFILE[@]}" "${PKGS[@]}")
  mkdir -p "$2"
  local out=${CARGO_TARGET_DIR:-$1/target}/rx-bench
  cp "$out/haifu" "$out/libhaifu_transport_quic.so" "$out/libhaifu_transport_multicast.so" "$2/"
}

BINS=()
if [ -n "${BASE_REV:-}" ]; then
  rev=$(git rev-parse --short "$BASE_REV")
  src=/tmp/haifu-bench-src-$rev
  if [ ! -f "$src/.exported" ]; then
    mkdir -p "$src"
    git archive "$rev" | tar -x -C "$src"
    touch "$src/.exported"
  fi
  echo "building $rev (clean export in $src)" >&2
  build "$src" "$WORK/bin-$rev"
  BINS+=(--bin "$rev=$WORK/bin-$rev")
fi
echo "building the working tree ($(git rev-parse --short HEAD))" >&2
build "$PWD" "$WORK/bin-now"
BINS+=(--bin "now=$WORK/bin-now")

python3 bench/rx_cpu.py "${BINS[@]}" --work "$WORK" --size-mib "${SIZE_MIB:-64}" \
  --clients "${CLIENTS:-2}" --rate "${RATE:-400}" --losses "${LOSSES:-0,0.05}" \
  --repeat "${REPEAT:-3}" --quiet-wait "${QUIET_WAIT:-20}" ${PERF:+--perf "$PERF"}

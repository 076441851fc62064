#!/usr/bin/env bash
# Benchmark: the fleet (issue: "a 256 MiB artifact to 8 clients on loopback
# multicast"), against uftp to the same 8 receivers, in the same run.
#
# One `haifu master`, one `haifu relay`, 8 `haifu client` (release build) in
# a fresh folder per case, a 256 MiB pseudo-random artifact (fixed seed),
# a workflow with `broadcast: {rounds: 3}`:
#   - no loss, at each rate of RATES (Mbit/s, fastest first) until one
#     delivers all 8 in round 1: that rate is used for everything below;
#   - 5% loss on every client (testing.drop_datagrams: 0.05);
#   - uftp -C none -R <same rate> -b 1400 to 8 uftpd on 127.0.0.1.
# Prints: total time (haifu: the master's round-1 start to the last client's
# "installed; completion sent", which includes the relay fetching the
# artifact from the master; uftp: its process's wall time), goodput per
# client (mean, min), the relay's bytes per round / artifact size (target
# <= 1.1), rounds (target 1, also at 5% loss), uftp_time / haifu_time (> 1:
# haifu faster). Then a breakdown (fetch, first datagram, rounds' durations,
# CPU used by other processes during each case) and results.json.
#
# uftpd cannot run 8 times on one host as shipped (no SO_REUSEADDR on its
# port; it ignores `-I 127.0.0.1` because lo lacks IFF_MULTICAST): it runs
# under the LD_PRELOAD shim bench/uftp_shim.c, which changes only that.
# Before each case the driver waits (up to QUIET_WAIT s) for the CPUs to be
# idle, since other builds on a 2-core machine would be measured too.
#
#   bash bench/fleet.sh                       # ~10-20 min; builds first
#   RATES=400 bash bench/fleet.sh             # one rate, no sweep
#   SIZE_MIB=32 RATES=400 bash bench/fleet.sh # a quick look
#   BENCH_REV=HEAD bash bench/fleet.sh        # build a clean export of a commit
#                                             # (in /tmp), not the working tree
#   KEEP=1 bash bench/fleet.sh                # also keep the installed trees (GiBs)
#   LOSS_RATES=100,50 bash bench/fleet.sh     # also the loss case at these rates
# Other knobs: CLIENTS (8), LOSS (0.05), ROUNDS (3), SETTLE_MS (master's
# settle_ms; default 1500 + 60/MiB), PORT (31000), WORK (a new /tmp folder),
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
SIZE_MIB=${SIZE_MIB:-256}
CLIENTS=${CLIENTS:-8}
RATES=${RATES:-800,600,400,300,200}
LOSS=${LOSS:-0.05}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-31000}
QUIET_WAIT=${QUIET_WAIT:-600}
WORK=${WORK:-$(mktemp -d /tmp/haifu-bench-fleet.XXXXXX)}
mkdir -p "$WORK"
PIDS=$WORK/pids
: >"$PIDS"

# Every process the driver starts is in $PIDS: stop those (and only those)
# whatever happens, then drop the work folder unless KEEP is set.
cleanup() {
  local pid
  while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$PIDS"
  sleep 1
  while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$PIDS"
  # Without KEEP only the logs, configs and results.json stay (the trees are GiBs).
  if [ -z "${KEEP:-}" ]; then
    rm -rf "$WORK/bin" "$WORK/app.bin" "$WORK/uftp_shim.so"
  fi
  echo "logs and results.json in $WORK" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Release binaries, copied out of the target folder.
if [ -n "${BENCH_REV:-}" ]; then
  # A fixed folder per commit (git archive keeps the commit's mtimes), so a
  # second run finds the build fresh.
  rev=$(git rev-parse --short "$BENCH_REV")
  SRC=${BENCH_SRC:-/tmp/haifu-bench-src-$rev}
  if [ ! -f "$SRC/.exported" ]; then
    mkdir -p "$SRC"
    git archive "$rev" | tar -x -C "$SRC"
    touch "$SRC/.exported"
  fi
  echo "building $rev (clean export in $SRC)" >&2
else
  echo "building the working tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- engine plugins Cargo.toml Cargo.lock || echo ', with local changes'))" >&2
fi
# The release profile under its own name, so its own folder: release/haifu
# in a target folder shared with other builds may be theirs.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SRC/target}
(cd "$SRC" && cargo build -q --config 'profile.fleet-bench.inherits="release"' --profile fleet-bench \
  -p haifu-cli -p haifu-transport-multicast -p haifu-transport-quic)
OUT=$CARGO_TARGET_DIR/fleet-bench
mkdir -p "$WORK/bin"
cp "$OUT/haifu" "$OUT/libhaifu_transport_quic.so" "$OUT/libhaifu_transport_multicast.so" "$WORK/bin/"

# 2. uftp (Debian: uftp = sender and uftpd), and the shim for 8 receivers.
if ! command -v uftp >/dev/null || ! command -v uftpd >/dev/null; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y uftp >/dev/null || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y uftp >/dev/null; }
fi
cc -O2 -shared -fPIC -o "$WORK/uftp_shim.so" bench/uftp_shim.c -ldl

# 3. The cases and the table.
python3 bench/fleet_bench.py --bin "$WORK/bin" --work "$WORK" --uftp-shim "$WORK/uftp_shim.so" \
  --pidfile "$PIDS" --size-mib "$SIZE_MIB" --clients "$CLIENTS" --rates "$RATES" --loss "$LOSS" \
  --rounds "$ROUNDS" --port "$PORT" --quiet-wait "$QUIET_WAIT" --loss-rates "${LOSS_RATES:-}" \
  ${SETTLE_MS:+--settle-ms "$SETTLE_MS"} ${KEEP:+--keep}

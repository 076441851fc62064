#!/usr/bin/env bash
# Benchmark: the LAN race (issue 13, benchmarks 1-3): haifu against uftp on a
# virtual LAN, same file, same receivers, same link, same run.
#
# The LAN is ../shared/bench/lan.sh's: a bridge, namespace hf0 sends
# (10.77.0.1), hf1..hfN receive; the sender's link capped with tbf, loss
# dropped independently at each receiver with nftables. haifu: master and
# relay in hf0, one `haifu client` per receiver namespace (fresh fleet per run,
# configured as bench/fleet.sh does); uftp in hf0, one uftpd per receiver
# namespace. Both tools are told to send at SEND_PCT of the link's rate.
# For each link rate x loss: a 64 MiB pseudo-random artifact (fixed seed) to
# 8 receivers, RUNS runs of each tool, medians. Prints, per case: haifu time
# (master's round-1 start to the last client's completion, from the logs) and
# uftp time (its process's wall time), uftp/haifu (> 1: haifu faster), wire
# bytes / file for each (hf0's eth0 tx_bytes, Ethernet header included),
# haifu's rounds and the clients done in round 1, CPU seconds per receiver and
# per GiB delivered (haifu client vs uftpd), the relay's achieved rate; then
# where haifu's time goes, and the dead-receiver case (one client SIGSTOPped
# for the whole run: the others' completion vs the same case without it).
# Every run goes to a JSON file. Needs root, iproute2, nftables (no netem
# here), uftp, python3, and cargo (or BIN).
#
#   LOCK=/work/bench.lock bash bench/lan-race.sh     # all of it (~45 min)
#   RATES=100mbit LOSSES=0,5 RUNS=1 SIZE_MIB=16 CLIENTS=4 bash bench/lan-race.sh
#   DEAD=none TOOLS=haifu RATES=1gbit bash bench/lan-race.sh
#   RELAY_ALONE=1 bash bench/lan-race.sh             # the relay alone on one core
# RELAY_ALONE=1: instead of the race, the relay alone on one core as one
# process (bench/relay_alone.py): master and relay in hf0, one client in
# hf1 stopped for the round (nothing receives), no tbf, the relay pinned to
# CPU RELAY_CPU (1) with taskset (the others on another CPU) and told to
# send at each of RELAY_RATES (2000,4000 Mbit/s); prints the rate on hf0's
# wire over the round's sending time, the relay's CPU seconds over it and
# Gbit per CPU-second. SIZE_MIB is 256 there; RUNS, QUIET_WAIT, START_LEAD,
# BIN, JSON, KEEP, LOCK and PORT as below.
# Knobs: RATES (100mbit,1gbit: tc rates of hf0's link), LOSSES (0,5,20 %),
# RUNS (3), SIZE_MIB (64), CLIENTS (8), SEND_PCT (95: both tools' send rate,
# % of the link), DEAD (auto = the first rate at 0 and 5% loss; RATE:LOSS,...;
# none), TOOLS (haifu,uftp), JSON (results file; default
# ./lan-race-DATE.json), LOCK (a file to flock for the whole run), KEEP=1
# (keep the work folder's logs), BIN (a folder with haifu and the two plugin
# .so files; default: cargo build --release here), LAN (lan.sh's path),
# QUIET_WAIT (120 s: wait for idle CPUs before each run), ATTEMPTS (2: runs of
# a case at most while other processes take >10% of the CPUs), RUN_TIMEOUT (900 s),
# PORT (31000). The master's knobs, as bench/fleet.sh sets them: SETTLE_MS
# (1500 + 60/MiB), ROUND_GRACE_SECS (600), POLL_MS (100), ROUNDS (3);
# START_LEAD (3 s: the run's scheduled start is this far after `haifu run`,
# so the relay fetches the artifact on instruction before round 1, as it
# does in a real window; 0 starts round 1 at once, fetch included);
# MASTER_EXTRA, RELAY_EXTRA, CLIENT_EXTRA (YAML lines appended to each
# config, "\n" between lines), RETRY_POLICY (a .rhai file instead of
# fleet.sh's policy), BROADCAST_POLICY (a .rhai file with round_budget;
# default: the shipped policies/broadcast.rhai, what an operator runs).
set -euo pipefail
CALLER_PWD=$PWD
KNOBS=(RATES LOSSES RUNS SIZE_MIB CLIENTS SEND_PCT DEAD TOOLS SETTLE_MS ROUND_GRACE_SECS POLL_MS
  ROUNDS START_LEAD MASTER_EXTRA RELAY_EXTRA CLIENT_EXTRA RETRY_POLICY BROADCAST_POLICY QUIET_WAIT ATTEMPTS RUN_TIMEOUT PORT
  RELAY_ALONE RELAY_RATES RELAY_CPU)
COMMAND=
for k in "${KNOBS[@]}"; do
  if [ -n "${!k+x}" ]; then COMMAND+="$k=$(printf %q "${!k}") "; fi
done
COMMAND+="bash bench/lan-race.sh"
cd "$(dirname "$0")/.."
SRC=$PWD

die() { echo "lan-race.sh: $*" >&2; exit 1; }

# 1. What it needs, each named on its own.
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, tc, nftables)"
need() { command -v "$1" >/dev/null || die "$1 not found (apt-get install $2)"; }
need ip iproute2
need tc iproute2
if [ -z "${RELAY_ALONE:-}" ]; then
  need nft nftables
  need uftp uftp
  need uftpd uftp
else
  need taskset util-linux
fi
need python3 python3
LAN=${LAN:-$SRC/../shared/bench/lan.sh}
[ -f "$LAN" ] || die "lan.sh not found at $LAN (set LAN=path/to/lan.sh)"
if [ -n "${BIN:-}" ]; then
  for f in haifu libhaifu_transport_quic.so libhaifu_transport_multicast.so; do
    [ -f "$BIN/$f" ] || die "$BIN/$f not found (BIN must hold haifu and both plugins)"
  done
else
  command -v cargo >/dev/null || die "cargo not found: install Rust, or set BIN=a folder with haifu and the plugins"
fi

if [ -n "${LOCK:-}" ]; then
  need flock util-linux
  exec 9>"$LOCK"
  flock -n 9 || { echo "waiting for $LOCK (another benchmark holds it)" >&2; flock 9; }
fi
# lan.sh's names are fixed (hfbr0, hf0..hfN): one LAN per machine.
if ip link show hfbr0 >/dev/null 2>&1; then
  die "a LAN is already up (hfbr0): another benchmark may be using it ('bash $LAN down' if it is stale)"
fi

WORK=$(mktemp -d /tmp/haifu-lan-race.XXXXXX)
PIDS=$WORK/pids
: >"$PIDS"
LAN_UP=
PY=

# Every process the driver starts is in $PIDS (the daemons' own pids: `ip
# netns exec` execs): stop those, and only those, whatever happens; then the
# LAN (only if this run made it) and the work folder.
cleanup() {
  local pid
  # The driver first: it stops what it started (its `finally` blocks).
  if [ -n "$PY" ] && kill -0 "$PY" 2>/dev/null; then
    kill -TERM "$PY" 2>/dev/null || true
    wait "$PY" 2>/dev/null || true
  fi
  while read -r pid; do
    if grep -qaE 'haifu|uftp' "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      kill -CONT "$pid" 2>/dev/null || true
    fi
  done <"$PIDS"
  sleep 1
  while read -r pid; do
    if grep -qaE 'haifu|uftp' "/proc/$pid/cmdline" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done <"$PIDS"
  if [ -n "$LAN_UP" ]; then bash "$LAN" down >/dev/null 2>&1 || echo "lan-race.sh: 'lan.sh down' failed" >&2; fi
  if [ -n "${KEEP:-}" ]; then
    rm -rf "${WORK:?}/bin" "${WORK:?}/app.bin"
    echo "logs in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 2. Release binaries, copied out of the target folder (a build meanwhile
# cannot change them).
mkdir -p "$WORK/bin"
if [ -z "${BIN:-}" ]; then
  echo "building the working tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- engine plugins Cargo.toml Cargo.lock || echo ', with local changes'))" >&2
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SRC/target}
  cargo build -q --release -p haifu-cli -p haifu-transport-multicast -p haifu-transport-quic
  BIN=$CARGO_TARGET_DIR/release
fi
cp "$BIN/haifu" "$BIN/libhaifu_transport_quic.so" "$BIN/libhaifu_transport_multicast.so" "$WORK/bin/"

# 3. The LAN: the sender and CLIENTS receivers, checked before use (the
# relay alone: one, stopped during the round).
CLIENTS=${CLIENTS:-8}
[ -z "${RELAY_ALONE:-}" ] || CLIENTS=1
LAN_UP=1
bash "$LAN" up "$CLIENTS" >/dev/null || die "'lan.sh up $CLIENTS' failed (needs the bridge and veth kernel modules)"
bash "$LAN" check >"$WORK/lan-check.log" 2>&1 || die "multicast does not cross the LAN: $(tail -1 "$WORK/lan-check.log")"

# 4. The cases and the table.
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
COMMIT=$(git rev-parse HEAD)$(git diff --quiet HEAD -- engine plugins Cargo.toml Cargo.lock || echo '+local changes')
JSON=${JSON:-$CALLER_PWD/lan-race-$(date -u +%Y%m%d-%H%M%S).json}
case "$JSON" in /*) ;; *) JSON=$CALLER_PWD/$JSON ;; esac
if [ -n "${RETRY_POLICY:-}" ]; then
  case "$RETRY_POLICY" in /*) ;; *) RETRY_POLICY=$CALLER_PWD/$RETRY_POLICY ;; esac
  [ -f "$RETRY_POLICY" ] || die "RETRY_POLICY $RETRY_POLICY not found"
fi
BROADCAST_POLICY=${BROADCAST_POLICY:-$SRC/policies/broadcast.rhai}
case "$BROADCAST_POLICY" in /*) ;; *) BROADCAST_POLICY=$CALLER_PWD/$BROADCAST_POLICY ;; esac
[ -f "$BROADCAST_POLICY" ] || die "BROADCAST_POLICY $BROADCAST_POLICY not found"
META=$(python3 -c 'import json,sys; print(json.dumps({"date": sys.argv[1], "commit": sys.argv[2], "command": sys.argv[3], "kernel": sys.argv[4], "uftp": sys.argv[5]}))' \
  "$DATE" "$COMMIT" "$COMMAND" "$(uname -r)" "$(dpkg-query -W -f '${Version}' uftp 2>/dev/null || echo unknown)")
echo "$DATE, commit $COMMIT: $COMMAND" >&2
# In the background, waited for: a signal to this shell runs its trap at once.
if [ -n "${RELAY_ALONE:-}" ]; then
  python3 bench/relay_alone.py --bin "$WORK/bin" --work "$WORK" --json "$JSON" --pidfile "$PIDS" \
    --size-mib "${SIZE_MIB:-256}" --rates "${RELAY_RATES:-2000,4000}" --runs "${RUNS:-3}" \
    --relay-cpu "${RELAY_CPU:-1}" --master-cpu "$([ "${RELAY_CPU:-1}" = 0 ] && echo 1 || echo 0)" \
    --start-lead "${START_LEAD:-3}" --quiet-wait "${QUIET_WAIT:-120}" --run-timeout "${RUN_TIMEOUT:-300}" \
    --port "${PORT:-31000}" --broadcast-policy "$BROADCAST_POLICY" --meta "$META" &
  PY=$!
  wait "$PY"
  exit
fi
python3 bench/lan_race.py --bin "$WORK/bin" --work "$WORK" --lan "$LAN" --json "$JSON" --pidfile "$PIDS" \
  --size-mib "${SIZE_MIB:-64}" --clients "$CLIENTS" --rates "${RATES:-100mbit,1gbit}" \
  --losses "${LOSSES:-0,5,20}" --runs "${RUNS:-3}" --send-pct "${SEND_PCT:-95}" --dead "${DEAD:-auto}" \
  --tools "${TOOLS:-haifu,uftp}" --rounds "${ROUNDS:-3}" --start-lead "${START_LEAD:-3}" --round-grace-secs "${ROUND_GRACE_SECS:-600}" \
  --poll-ms "${POLL_MS:-100}" --quiet-wait "${QUIET_WAIT:-120}" --run-timeout "${RUN_TIMEOUT:-900}" \
  --attempts "${ATTEMPTS:-2}" \
  --port "${PORT:-31000}" --master-extra "${MASTER_EXTRA:-}" --relay-extra "${RELAY_EXTRA:-}" \
  --client-extra "${CLIENT_EXTRA:-}" --broadcast-policy "$BROADCAST_POLICY" --meta "$META" \
  ${SETTLE_MS:+--settle-ms "$SETTLE_MS"} ${RETRY_POLICY:+--retry-policy "$RETRY_POLICY"} &
PY=$!
wait "$PY"

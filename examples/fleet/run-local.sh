#!/usr/bin/env bash
# A real haifu fleet on this machine's loopback: one master, two relays
# (two "stores") and CLIENTS clients (default 6), as separate processes
# talking QUIC with mutual TLS through the quic plugin and receiving the
# broadcast over loopback multicast through the multicast plugin. It rolls
# examples/artifacts/pos-app-2.4.0.tar out in up to 3 rounds, every client
# dropping DROP of the datagrams it receives (default 0.1, so most need two
# rounds), then prints the report and the audit. The run's deadline is 45 s
# after it starts: the rounds take about 10 s, the cut-off waits for it.
#
#   bash examples/fleet/run-local.sh            # 6 clients
#   CLIENTS=20 DROP=0.05 bash examples/fleet/run-local.sh
#
# Everything goes under WORK (default: a new folder in /tmp, kept so you can
# read every process's log); nothing outside it is touched.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIENTS=${CLIENTS:-6}
DROP=${DROP:-0.1}
WORK=${WORK:-$(mktemp -d /tmp/haifu-fleet.XXXXXX)}
PORT=${PORT:-$((17400 + RANDOM % 2000))}

cargo build --release --quiet -p haifu-cli -p haifu-transport-multicast -p haifu-transport-quic
BIN=$PWD/target/release/haifu
ART=$PWD/examples/artifacts/pos-app-2.4.0.tar
mkdir -p "$WORK/plugins"
cp target/release/libhaifu_transport_quic.so target/release/libhaifu_transport_multicast.so "$WORK/plugins/"
export HAIFU_PLUGINS=$WORK/plugins HAIFU_HOME=$WORK/home
cd "$WORK"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$BIN" ca init >/dev/null
"$BIN" keys show >/dev/null
cat > master.yaml <<YAML
home: home
listen: 127.0.0.1:$PORT
settle_ms: 2000
metrics: 127.0.0.1:$((PORT + 20))
YAML
"$BIN" ca issue master --role master >/dev/null
relays=(store-east store-west)
for i in 0 1; do
  r=${relays[$i]}
  "$BIN" ca issue "$r" --role relay >/dev/null
  cat > "$r.yaml" <<YAML
name: $r
master: { address: "127.0.0.1:$PORT", name: master }
listen: 127.0.0.1:$((PORT + 1 + i))
tls: { ca: home/ca/ca.crt, cert: home/certs/$r.crt, key: home/certs/$r.key }
multicast: { group: "239.255.91.$((7 + i)):$((PORT + 10 + i))", interface: 127.0.0.1 }
data: $r-data
metrics: 127.0.0.1:$((PORT + 21 + i))
YAML
done
for n in $(seq 1 "$CLIENTS"); do
  id=$(printf 'pos-%04d' "$n"); i=$((n % 2)); r=${relays[$i]}
  "$BIN" ca issue "$id" --role client >/dev/null
  cat > "$id.yaml" <<YAML
id: $id
artifact: pos-app
relay: { address: "127.0.0.1:$((PORT + 1 + i))", name: $r }
tls: { ca: home/ca/ca.crt, cert: home/certs/$id.crt, key: home/certs/$id.key }
master_key: home/keys/master.pub
install_root: $id-root
multicast: { interface: 127.0.0.1 }
testing: { drop_datagrams: $DROP, seed: $n }
YAML
done
cat > retry.rhai <<'RHAI'
// Rounds 3 seconds apart until everyone has it or the rounds run out.
fn next_round(ctx) {
    if ctx.delivered >= ctx.total { return #{ stop: true, reason: "every client has it" }; }
    if ctx.round >= ctx.rounds { return #{ stop: true, reason: "all planned rounds sent" }; }
    3
}
RHAI
cat > rollout.yaml <<YAML
name: loopback-rollout
description: pos-app 2.4.0 to every client on this machine, now
artifact: { name: pos-app, version: 2.4.0, path: $ART }
targets: { relays: [store-east, store-west] }
schedule: { start: $(date -u +%Y-%m-%dT%H:%M:%SZ), deadline: 45s }
transports: { broadcast: multicast, unicast: quic }
rate: 50Mbit/s
policies: { retry: retry.rhai }
steps:
  - register
  - broadcast: { rounds: 3 }
  - audit
  - delta: { until: 40s }   # stragglers' deltas on boot: the next issue
  - disconnect              # at the deadline, by the default (safe) policy
YAML

echo "fleet in $WORK: master, 2 relays, $CLIENTS clients (logs: *.log)"
RUST_LOG=${RUST_LOG:-info} "$BIN" master --config master.yaml 2>master.log & pids+=($!)
for r in "${relays[@]}"; do RUST_LOG=${RUST_LOG:-info} "$BIN" relay --config "$r.yaml" 2>"$r.log" & pids+=($!); done
for r in "${relays[@]}"; do
  until grep -q "connected to the master" "$r.log" 2>/dev/null; do sleep 0.2; done
done
for n in $(seq 1 "$CLIENTS"); do
  id=$(printf 'pos-%04d' "$n")
  RUST_LOG=${RUST_LOG:-info} "$BIN" client --config "$id.yaml" 2>"$id.log" & pids+=($!)
done
for n in $(seq 1 "$CLIENTS"); do
  id=$(printf 'pos-%04d' "$n")
  until grep -q "client registered client=$id" store-*.log 2>/dev/null; do sleep 0.2; done
done
sleep 1
"$BIN" run rollout.yaml --live
echo
"$BIN" audit 1
echo
grep -h "round sent run" store-*.log | sed 's/.*INFO haifu_fleet::relay: //'
echo
# What a Prometheus server would scrape: the master's view of the run and
# each store's multicast bytes (haifu metrics list names them all).
scrape() { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3; exec 3<&-; }
scrape $((PORT + 20)) | grep -E '^haifu_master_(run_clients|completions_recorded_total)' || true
for i in 0 1; do scrape $((PORT + 21 + i)) | grep -E '^haifu_relay_multicast_sent_bytes_total' | sed "s/^/${relays[$i]} /" || true; done

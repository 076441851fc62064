#!/usr/bin/env bash
# Benchmark: the workflow engine (issue 3), with a baseline from the same run.
#   - `haifu check` on the shipped workflows, against `haifu --version` (the
#     cost of starting the process at all); target under 100 ms
#   - `haifu simulate` with 100,000 clients and 3 rounds, against the same
#     simulation with 10,000 clients (per-client cost should stay flat);
#     target under 3 s and under 500 MiB
#   - policy calls (criterion, `cargo bench -p haifu-policy`): median per
#     call of next_round and allow; target under 5 µs
#
#   bash bench/engine.sh            # RUNS=5 by default
#   SKIP_POLICY=1 bash bench/engine.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
cargo build --release -q -p haifu-cli
HAIFU=$PWD/target/release/haifu

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() { # prints "median_seconds max_rss_kib"
  local secs=() rss=()
  for _ in $(seq "$RUNS"); do
    read -r s r rc < <(python3 bench/measure.py -- "$@")
    [ "$rc" = 0 ] || { echo "failed (exit $rc): $*" >&2; exit 1; }
    secs+=("$s"); rss+=("$r")
  done
  echo "$(printf '%s\n' "${secs[@]}" | median) $(printf '%s\n' "${rss[@]}" | sort -n | tail -1)"
}

read -r base_s base_r < <(measure "$HAIFU" --version)
read -r check_s check_r < <(measure "$HAIFU" check workflows/nightly-store-rollout.yaml workflows/urgent-security-fix.yaml)
SIM=(simulate workflows/nightly-store-rollout.yaml --loss 5 --offline 30 --seed 1 --json)
read -r s10_s s10_r < <(measure "$HAIFU" "${SIM[@]}" --clients 10000)
read -r s100_s s100_r < <(measure "$HAIFU" "${SIM[@]}" --clients 100000)

python3 - "$base_s" "$check_s" "$check_r" "$s10_s" "$s10_r" "$s100_s" "$s100_r" <<'PY'
import sys
base, check, check_r, s10, s10_r, s100, s100_r = map(float, sys.argv[1:])
print("engine benchmark (median of runs)\n")
print(f"{'what':<44} {'seconds':>8} {'peak MiB':>9}  note")
print(f"{'haifu --version (process start, baseline)':<44} {base:>8.3f} {'':>9}")
print(f"{'haifu check, 2 shipped workflows':<44} {check:>8.3f} {check_r/1024:>9.1f}  {check/base:.1f}x start-up; target < 0.100 s")
print(f"{'haifu simulate, 10,000 clients (baseline)':<44} {s10:>8.3f} {s10_r/1024:>9.1f}")
print(f"{'haifu simulate, 100,000 clients':<44} {s100:>8.3f} {s100_r/1024:>9.1f}  {s100/s10:.1f}x the 10k run for 10x clients; target < 3 s, < 500 MiB")
PY

if [ -z "${SKIP_POLICY:-}" ]; then
  echo
  echo "policy calls (criterion; median per call, target < 5 µs):"
  cargo bench -q -p haifu-policy --bench policy 2>/dev/null | grep -E '^[a-z_/ ]+time:' || true
fi

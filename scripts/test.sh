#!/usr/bin/env bash
# Installs what the tests need (only what is missing), then runs every check CI runs:
# formatting, clippy, and the whole test suite (unit, integration, real peers).
set -euo pipefail
cd "$(dirname "$0")/.."

# Packages the tests drive as real peers: nft, ip, haproxy, nginx, iperf3, hyperfine, and kubectl
# (from the machine image's apt sources).
need=()
for pair in nft:nftables ip:iproute2 haproxy:haproxy nginx:nginx iperf3:iperf3 hyperfine:hyperfine kubectl:kubectl; do
  bin=${pair%%:*} pkg=${pair#*:}
  command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Unit, integration and golden tests (no doc tests: the crates have none), then one summary line.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"

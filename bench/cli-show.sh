#!/usr/bin/env bash
# How fast `show` answers on a store of 1,000 resources (target: <= 20 ms per command).
# Builds the release binary, fills a throwaway store (the seed procedure + route tables up to
# 1,000 resources), then times `show` commands with hyperfine.
#
#   bench/cli-show.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release -q
export APIWALL="$PWD/target/release/apiwall"
export APIWALL_HOME; APIWALL_HOME=$(mktemp -d)
trap 'rm -rf "$APIWALL_HOME"' EXIT

scripts/procedure.sh >/dev/null
MC=MC_myResourceGroup_myAKSCluster_westeurope
# Count every stored resource, then top up with route tables to 1,000.
count() {
  local n=0
  for q in "group list" "aks list" "vm list" "network vnet list" "network public-ip list" "network firewall list" "network route-table list" "feature list" "extension list"; do
    n=$((n + $("$APIWALL" $q --query 'length(@)' -o tsv)))
  done
  echo "$n"
}
n=$(count)
for i in $(seq "$n" 999); do
  "$APIWALL" network route-table create -g "$MC" -n "filler-$i" -o none
done
echo "store: $(count) resources"

hyperfine -N --warmup 5 --runs 100 --export-json /tmp/apiwall-show.json \
  "$APIWALL network firewall show -g $MC -n myAzureFirewall" \
  "$APIWALL aks show -g myResourceGroup -n myAKSCluster --query apiServerAddress -o tsv" \
  "$APIWALL network route-table show -g $MC -n filler-500 -o table"
python3 - <<'PY'
import json, statistics
for r in json.load(open("/tmp/apiwall-show.json"))["results"]:
    print(f"| `{r['command'].split('/')[-1]}` | {statistics.median(r['times'])*1000:.1f} ms | {r['mean']*1000:.1f} ms | {max(r['times'])*1000:.1f} ms |")
PY

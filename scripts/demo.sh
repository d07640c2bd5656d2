#!/usr/bin/env bash
# The main job, on the embedded default (SQLite): the seed's procedure as a live lab.
# Builds apiwall, runs the procedure up to the firewall rule, builds the topology in network
# namespaces (nodes, vnet fabric, firewall, internet, API server behind the gate, workstation,
# outsider), and prints who reaches the API server before and after the procedure's route and
# `aks update`. Needs root (namespaces). KEEP_LAB=1 leaves the lab up to explore.
#
# The demo's store is $APIWALL_HOME (default ~/.apiwall/demo), made afresh each run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in nft:nftables ip:iproute2; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release -q
export APIWALL="$PWD/target/release/apiwall"
export APIWALL_HOME="${APIWALL_HOME:-$HOME/.apiwall/demo}"
apiwall() { "$APIWALL" "$@"; }
apiwall lab down
rm -rf "$APIWALL_HOME"

echo "== the seed's procedure, up to the firewall rule (store: $APIWALL_HOME/apiwall.db)"
scripts/procedure.sh --stop-before-route
echo
echo "== lab up: the model as hosts in network namespaces"
apiwall lab up -o table
[[ ${KEEP_LAB:-} == 1 ]] || trap 'echo; echo "== lab down"; apiwall lab down' EXIT

echo
echo "== access matrix: no route to the firewall, no authorized ranges"
apiwall lab matrix -o table

echo
echo "== the procedure's route through the firewall and 'aks update --api-server-authorized-ip-ranges FIREWALL_PUBLIC_IP/32'"
scripts/procedure.sh | grep -E 'ROUTE_NEXT_HOP|AUTHORIZED_IP_RANGES'
apiwall lab wait -o none
echo
echo "== access matrix after the procedure"
apiwall lab matrix -o table

echo
echo "== why: network watcher trace from a node, and from the outsider"
MC=MC_myResourceGroup_myAKSCluster_westeurope
API=$(apiwall aks show -g myResourceGroup -n myAKSCluster --query apiServerAddress -o tsv)
NODE=$(apiwall vm list -g "$MC" --query '[0].name' -o tsv)
apiwall network watcher trace -g "$MC" --vm "$NODE" --dest-ip "$API" -o table
echo
apiwall network watcher trace --source-ip 192.0.2.66 --dest-ip "$API" -o table
echo
echo "== and the real kubectl from a node, through the firewall and the gate"
apiwall aks get-credentials -g myResourceGroup -n myAKSCluster --file "$APIWALL_HOME/kubeconfig" --overwrite-existing
apiwall lab exec "$NODE" -- kubectl --kubeconfig "$APIWALL_HOME/kubeconfig" get endpoints \
  -o=jsonpath='{.items[?(@.metadata.name == "kubernetes")].subsets[].addresses[].ip}'
echo
apiwall lab exec "$NODE" -- kubectl --kubeconfig "$APIWALL_HOME/kubeconfig" get nodes

#!/usr/bin/env bash
# The main job on the embedded default (SQLite under $APIWALL_HOME, default ~/.apiwall):
# builds apiwall, replays the seed's procedure, and shows the resulting cluster and firewall.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
export APIWALL="$PWD/target/release/apiwall"
echo "== the seed procedure (store: ${APIWALL_HOME:-$HOME/.apiwall})"
scripts/procedure.sh
MC=MC_myResourceGroup_myAKSCluster_westeurope
echo; echo "== cluster"
"$APIWALL" aks show -g myResourceGroup -n myAKSCluster -o table
"$APIWALL" aks show -g myResourceGroup -n myAKSCluster --query '{authorizedIpRanges: apiServerAccessProfile.authorizedIpRanges, outboundType: networkProfile.outboundType}' -o yaml
echo "== nodes"
"$APIWALL" vm list -g "$MC" --query '[].{Name: name, PrivateIp: privateIps}' -o table
echo; echo "== firewall"
"$APIWALL" network firewall show -g "$MC" -n myAzureFirewall --query '{Name: name, PrivateIp: ipConfigurations[0].privateIpAddress}' -o table
"$APIWALL" network firewall network-rule list -g "$MC" -f myAzureFirewall -c myAzureFirewallCollection -o table
echo; echo "== routes of the agentpool route table"
"$APIWALL" network route-table route list -g "$MC" --route-table-name "$("$APIWALL" network route-table list -g "$MC" --query "[?contains(name,'agentpool')].name" -o tsv)" -o table

#!/usr/bin/env bash
# The seed's procedure (DESIGN.md §1), command for command, with `az` replaced by apiwall.
# Prints each captured variable as NAME=value. Safe to run again: every create is an upsert.
#
#   APIWALL=path/to/apiwall scripts/procedure.sh [--stop-before-route]
#
# --stop-before-route stops before the route to the firewall and the authorized ranges, so the
# cluster can be seen before and after them (running the whole script afterwards is safe).
set -euo pipefail
apiwall() { "${APIWALL:-apiwall}" "$@"; }

apiwall feature register --name APIServerSecurityPreview --namespace Microsoft.ContainerService -o none
apiwall provider register --namespace Microsoft.ContainerService

apiwall group create -n myResourceGroup -l westeurope -o none
apiwall aks create -g myResourceGroup -n myAKSCluster --node-count 3 -o none
MC_RESOURCE_GROUP=$(apiwall aks show -g myResourceGroup -n myAKSCluster --query nodeResourceGroup -o tsv)
VNET_NAME=$(apiwall network vnet list --resource-group $MC_RESOURCE_GROUP --query [0].name -o tsv)
apiwall network vnet subnet create --resource-group $MC_RESOURCE_GROUP --vnet-name $VNET_NAME --name AzureFirewallSubnet --address-prefixes 10.200.0.0/16 -o none
apiwall extension add --name azure-firewall
apiwall network firewall create --resource-group $MC_RESOURCE_GROUP --name myAzureFirewall -o none
FIREWALL_PUBLIC_IP=$(apiwall network public-ip create --resource-group $MC_RESOURCE_GROUP --name myAzureFirewallPublicIP --sku Standard --query publicIp.ipAddress -o tsv)
apiwall network firewall ip-config create --resource-group $MC_RESOURCE_GROUP --name myAzureFirewallIPConfig --vnet-name $VNET_NAME --firewall-name myAzureFirewall --public-ip-address myAzureFirewallPublicIP -o none
apiwall network firewall network-rule create --resource-group $MC_RESOURCE_GROUP --firewall-name myAzureFirewall --name AllowTCPOutbound --collection-name myAzureFirewallCollection --priority 200 --action Allow --protocols TCP --source-addresses '*' --destination-addresses '*' --destination-ports '*' -o none
ROUTE_TABLE=$(apiwall network route-table list --resource-group $MC_RESOURCE_GROUP --query "[?contains(name,'agentpool')].name" -o tsv)
FIREWALL_INTERNAL_IP=$(apiwall network firewall show --resource-group $MC_RESOURCE_GROUP --name myAzureFirewall --query ipConfigurations[0].privateIpAddress -o tsv)
# Outside the lab there is no kubectl endpoint to ask: the cluster knows its API server address.
K8S_ENDPOINT_IP=$(apiwall aks show -g myResourceGroup -n myAKSCluster --query apiServerAddress -o tsv)
if [[ ${1:-} == --stop-before-route ]]; then
  for v in MC_RESOURCE_GROUP VNET_NAME FIREWALL_PUBLIC_IP ROUTE_TABLE FIREWALL_INTERNAL_IP K8S_ENDPOINT_IP; do
    printf '%s=%s\n' "$v" "${!v}"
  done
  exit 0
fi
apiwall network route-table route create --resource-group $MC_RESOURCE_GROUP --route-table-name $ROUTE_TABLE --name AzureFirewallAPIServer --address-prefix $K8S_ENDPOINT_IP/32 --next-hop-ip-address $FIREWALL_INTERNAL_IP --next-hop-type VirtualAppliance -o none
apiwall aks update --resource-group myResourceGroup --name myAKSCluster --api-server-authorized-ip-ranges $FIREWALL_PUBLIC_IP/32 -o none

ROUTE_NEXT_HOP=$(apiwall network route-table route show -g $MC_RESOURCE_GROUP --route-table-name $ROUTE_TABLE -n AzureFirewallAPIServer --query "join(' ', [nextHopType, nextHopIpAddress])" -o tsv)
AUTHORIZED_IP_RANGES=$(apiwall aks show -g myResourceGroup -n myAKSCluster --query apiServerAccessProfile.authorizedIpRanges -o json | tr -d ' \n')

for v in MC_RESOURCE_GROUP VNET_NAME FIREWALL_PUBLIC_IP ROUTE_TABLE FIREWALL_INTERNAL_IP K8S_ENDPOINT_IP ROUTE_NEXT_HOP AUTHORIZED_IP_RANGES; do
  printf '%s=%s\n' "$v" "${!v}"
done

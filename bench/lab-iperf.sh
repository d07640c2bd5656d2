#!/usr/bin/env bash
# iperf3 through the lab firewall (issue 5, "Benchmark"; DESIGN §5: with 10,000 rules compiled
# with sets, at least 0.9× the forwarding throughput of no rules). Root only; a few minutes.
#
#   sudo bench/lab-iperf.sh [OUT.md]        (default OUT: /tmp/lab-iperf.md; copy the table into BENCHMARKS.md)
#
# Env: APIWALL (default target/release/apiwall, built), DURATION (iperf3 seconds, 5),
# REPS (3), CONNECT_SECONDS (3), RULES (10000).
#
# Builds the seed's procedure in the lab (own APIWALL_HOME), then, with the lab controller stopped
# (SIGSTOP, so that nothing re-applies the store's table under us) and its table removed, loads
# four tables into the firewall once with crates/lab/examples/iperf_rules.rs (`render` +
# `apply_ruleset`; the 10,000-rule ones take ~15-30 s each), each made dormant, then wakes one at
# a time and measures, interleaved, REPS times each:
#   none      the firewall's table without its filter: only the SNAT chain (conntrack + NAT);
#   allow-all the procedure's single rule, with the full stateful table;
#   sets      RULES rules compiled by Mode::Sets (destination maps to bucket chains), the flow
#             decided by the last rule;
#   naive     the same rules, one nft rule per source × destination × port (Mode::Naive).
# Measures: iperf3 TCP throughput node → API host (198.51.100.1:5201), and sequential TCP
# connection setup (each SYN is classified; established packets take the ct-mark fast path).
# `lab down` runs on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-/tmp/lab-iperf.md}
DURATION=${DURATION:-5}
REPS=${REPS:-3}
CONNECT_SECONDS=${CONNECT_SECONDS:-3}
RULES=${RULES:-10000}
MODES=(none allow-all sets naive)
API=198.51.100.1
NODE=aks-nodepool1-81643024-vmss000000
FW=myAzureFirewall

[[ $(id -u) == 0 ]] || { echo "run as root (network namespaces)" >&2; exit 1; }
need=()
for pair in nft:nftables ip:iproute2 iperf3:iperf3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Namespaces are global: wait (up to 20 min) for another lab to go away.
for _ in $(seq 40); do
  ip netns list | grep -q '^awlab-' || break
  echo "another lab is up; waiting…" >&2
  sleep 30
done
if ip netns list | grep -q '^awlab-'; then echo "a lab is still up; giving up" >&2; exit 1; fi

cargo build --release -q -p apiwall-cli -p apiwall-lab --example iperf_rules
APIWALL=${APIWALL:-target/release/apiwall}
HELPER=$PWD/target/release/examples/iperf_rules
export APIWALL APIWALL_HOME
APIWALL_HOME=$(mktemp -d)
apiwall() { "$APIWALL" "$@"; }

CONTROLLER=""
cleanup() {
  set +e
  [[ -n $CONTROLLER ]] && kill -CONT "$CONTROLLER" 2>/dev/null
  apiwall lab down >/dev/null 2>&1
  rm -rf "$APIWALL_HOME"
}
trap cleanup EXIT

echo "building the lab (APIWALL_HOME=$APIWALL_HOME)…" >&2
scripts/procedure.sh >/dev/null
apiwall lab up >/dev/null
FWNS=awlab-$FW
CONTROLLER=$(python3 -c 'import json,sys; print(next(p["pid"] for p in json.load(open(sys.argv[1]))["processes"] if p["name"]=="controller"))' "$APIWALL_HOME/lab/state.json")
# The controller re-applies the store's table on every store revision; nothing changes the store
# during the run, and it is stopped anyway so that it cannot overwrite the benchmark's tables.
kill -STOP "$CONTROLLER"

# Servers in the API host: iperf3 on 5201, the accept-and-close server on 5202.
apiwall lab exec apiserver -- iperf3 -s -p 5201 -D --logfile "$APIWALL_HOME/iperf3-server.log"
# (In a subshell, so that this shell does not report it killed: `lab down` kills it with the
# namespace's processes.)
(apiwall lab exec apiserver -- "$HELPER" serve "$API:5202" >/dev/null 2>&1 &)
sleep 0.5

# The lab's own table goes; each benchmark table is loaded once, as `apiwall_bench_<mode>`, then
# made dormant (its hooks unregistered); each measurement wakes exactly one of them.
fwnft() { ip netns exec "$FWNS" nft "$@"; }
fwnft delete table inet "apiwall_$FW"
table_of() { echo "apiwall_bench_${1//-/_}"; }
declare -A INFO
for m in "${MODES[@]}"; do
  INFO[$m]=$("$HELPER" apply "$m" --netns "$FWNS" --table "$(table_of "$m")" --rules "$RULES" \
    --dst "$API" --ports 5201,5202)
  fwnft add table inet "$(table_of "$m")" '{ flags dormant; }'
  echo "$m: ${INFO[$m]}" >&2
done

declare -A GBPS CPS P50
for rep in $(seq "$REPS"); do
  for m in "${MODES[@]}"; do
    fwnft add table inet "$(table_of "$m")"
    bps=$(apiwall lab exec "$NODE" -- iperf3 -c "$API" -p 5201 -t "$DURATION" -J |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
    conn=$(apiwall lab exec "$NODE" -- "$HELPER" connect "$API:5202" "$CONNECT_SECONDS")
    fwnft add table inet "$(table_of "$m")" '{ flags dormant; }'
    gbps=$(python3 -c "print(f'{$bps/1e9:.3f}')")
    GBPS[$m]+="$gbps "
    CPS[$m]+="$(sed 's/.*per_s=\([0-9]*\).*/\1/' <<<"$conn") "
    P50[$m]+="$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$conn") "
    echo "rep $rep $m: $gbps Gbit/s; $conn" >&2
  done
done

# Evidence: the server saw the firewall's public IP, and the last rule decided the flows.
grep -q "from 203.0.113.2" "$APIWALL_HOME/iperf3-server.log" ||
  { echo "the iperf3 server did not see the firewall's public IP" >&2; exit 1; }
# (Listed to files first: a pipe that stops reading early would SIGPIPE nft under pipefail.)
for m in sets naive; do fwnft list table inet "$(table_of "$m")" >"$APIWALL_HOME/classify-$m.nft"; done
last_rule_hits() {
  grep 'bench-last/allow-benchmark-flow' "$APIWALL_HOME/classify-$1.nft" |
    sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}'
}
HITS_SETS=$(last_rule_hits sets)
HITS_NAIVE=$(last_rule_hits naive)
FIRST_HITS=$(grep 'comment "bench-0/rule-0"' "$APIWALL_HOME/classify-sets.nft" |
  sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}')

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"${INFO[$1]}"; }
base_g=$(median <<<"${GBPS[none]}")
base_c=$(median <<<"${CPS[none]}")
{
  echo "## Kernel firewall: iperf3 through the lab firewall"
  echo
  echo "Command: \`sudo DURATION=$DURATION REPS=$REPS CONNECT_SECONDS=$CONNECT_SECONDS RULES=$RULES bench/lab-iperf.sh\`"
  echo "($(date -u +%F), $(nproc) cores, $(uname -r), $(nft --version), $(iperf3 --version | head -1 | cut -d' ' -f1-2))."
  echo
  echo "Path: node \`$NODE\` → fabric (route table) → \`$FW\` (nftables, SNAT to 203.0.113.2) →"
  echo "internet → API host $API. Throughput: \`iperf3 -c $API -p 5201 -t $DURATION\` (one TCP stream)."
  echo "Connection setup: sequential connect + server close for ${CONNECT_SECONDS} s (\`iperf_rules connect\`);"
  echo "only each connection's SYN is classified, the rest takes the ct-mark fast path."
  echo "Medians of $REPS interleaved runs. Each table is loaded once (\`iperf_rules apply\`: \`render\` +"
  echo "\`apply_ruleset\`) and then woken/made dormant per run; the lab controller is stopped (SIGSTOP)."
  echo
  echo "| firewall table | rules | nft rules | sets + maps | chains | load | throughput | × none | connections/s | × none | connect p50 |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for m in "${MODES[@]}"; do
    g=$(median <<<"${GBPS[$m]}")
    c=$(median <<<"${CPS[$m]}")
    p=$(median <<<"${P50[$m]}")
    printf '| %s | %s | %s | %s | %s | %s ms | %.2f Gbit/s | %.2f | %.0f | %.2f | %s µs |\n' \
      "$m" "$(field "$m" firewall_rules)" "$(field "$m" nft_rules)" "$(field "$m" sets)" "$(field "$m" chains)" \
      "$(field "$m" apply_ms)" "$g" "$(python3 -c "print($g/$base_g)")" "$c" "$(python3 -c "print($c/$base_c)")" "$p"
  done
  echo
  echo "Counters: the last rule (\`bench-last/allow-benchmark-flow\`) classified $HITS_SETS packets with sets"
  echo "and $HITS_NAIVE naively (the SYN of every connection of the run); the first rule's counter (sets), $FIRST_HITS. The iperf3 server"
  echo "saw 203.0.113.2 (the firewall's SNAT)."
  echo
  echo "Raw (Gbit/s per run): $(for m in "${MODES[@]}"; do printf '%s: %s; ' "$m" "${GBPS[$m]% }"; done)"
  echo
  echo "Raw (connections/s per run): $(for m in "${MODES[@]}"; do printf '%s: %s; ' "$m" "${CPS[$m]% }"; done)"
} >"$OUT"
cat "$OUT"

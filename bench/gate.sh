#!/usr/bin/env bash
# The gate against its peers, side by side in one run, all on loopback:
#   direct (no proxy), apiwall gate, HAProxy (tcp-request connection reject unless { src -f allow.lst }),
#   nginx stream (allow/deny).
# One load generator (crates/gate/examples/loadgen.rs) drives them all and serves as the upstream.
# For each authorized-set size it measures denied connections/s, admitted connection latency
# (connect + first echoed byte, p50/p99) and single-stream bulk throughput; REPS rounds, medians.
#
#   bench/gate.sh                 # sizes 1 200 100000 1000000 (nginx skips 1000000)
#   SIZES="1 200" REPS=5 bench/gate.sh
#
# Prints a markdown table and writes it to $OUT (default /tmp/gate-results.md), raw figures beside it.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"1 200 100000 1000000"}
REPS=${REPS:-3}
DENY_SECS=${DENY_SECS:-2}
DENY_CONC=${DENY_CONC:-64}
LAT_N=${LAT_N:-2000}
MIB=${MIB:-1024}
OUT=${OUT:-${TMPDIR:-/tmp}/gate-results.md}

# Peers, installed if missing (as scripts/test.sh does).
need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || need+=(libnginx-mod-stream)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release -q -p apiwall-cli -p apiwall-gate --example loadgen
APIWALL=$PWD/target/release/apiwall
LG=$PWD/target/release/examples/loadgen

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { # a free loopback port
  local p
  while :; do
    p=$((10000 + RANDOM % 20000)) # below the ephemeral range (32768-60999)
    (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
  done
}
wait_port() { # wait until something accepts on 127.0.0.1:$1
  for _ in $(seq 1 600); do
    (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; tail -5 "$work"/*/*.log "$work"/*/*.err 2>/dev/null >&2 || true
  return 1
}

UP=$(port)
"$LG" serve 127.0.0.1:"$UP" &
pids+=($!)
wait_port "$UP"

CLIENT=127.0.0.10 # the authorized client; denied sources are 127.0.1.1 .. 127.0.4.250
results=${OUT%.md}.raw # kept: one "peer prefixes test value" line per measurement
: >"$results"

run_peer() { # peer size addr
  local peer=$1 n=$2 addr=$3 v
  if [[ $peer != direct ]]; then
    v=$("$LG" deny "$addr" "$DENY_SECS" "$DENY_CONC")
    echo "$peer $n deny $(sed 's/.*"denied_per_s":\([0-9.]*\).*/\1/' <<<"$v")" >>"$results"
    grep -q '"not_denied":0' <<<"$v" || echo "WARNING: $peer let a denied source through: $v" >&2
  fi
  v=$("$LG" latency "$addr" "$LAT_N" "$CLIENT")
  echo "$peer $n p50 $(sed 's/.*"p50_us":\([0-9.]*\).*/\1/' <<<"$v")" >>"$results"
  echo "$peer $n p99 $(sed 's/.*"p99_us":\([0-9.]*\).*/\1/' <<<"$v")" >>"$results"
  v=$("$LG" throughput "$addr" "$MIB" "$CLIENT")
  echo "$peer $n tput $(sed 's/.*"mib_per_s":\([0-9.]*\).*/\1/' <<<"$v")" >>"$results"
}

for n in $SIZES; do
  echo "== $n authorized prefixes" >&2
  d=$work/$n
  mkdir -p "$d"
  # The client's /32 plus n-1 other /32s from 10.0.0.0/8 (ACL entries only; no traffic goes there).
  awk -v n="$n" 'BEGIN { print "127.0.0.10/32"; for (i = 1; i < n; i++) printf "10.%d.%d.%d/32\n", int(i / 65536), int(i / 256) % 256, i % 256 }' >"$d/allow.lst"

  # apiwall: the ranges go through the CLI and the store, as an operator's would.
  export APIWALL_HOME=$d/home
  "$APIWALL" group create -n bench -l westeurope -o none
  t0=$(date +%s.%N)
  "$APIWALL" aks create -g bench -n c --node-count 1 --api-server-authorized-ip-ranges @"$d/allow.lst" -o none
  t1=$(date +%s.%N)
  GP=$(port) AP=$(port)
  "$APIWALL" gate run -g bench -n c --listen 127.0.0.1:"$GP" --admin 127.0.0.1:"$AP" --upstream 127.0.0.1:"$UP" --no-access-log 2>"$d/gate.err" &
  gate_pid=$!
  pids+=($gate_pid)
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$AP/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$AP/readyz" >/dev/null || { echo "gate not ready" >&2; exit 1; }
  t2=$(date +%s.%N)
  echo "apiwall: aks create $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s, gate ready $(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.2f", b-a}') s, RSS $(awk '/VmRSS/{print $2}' /proc/$gate_pid/status) KiB" >&2

  HP=$(port)
  cat >"$d/haproxy.cfg" <<EOF
global
  maxconn 8000
  nbthread 2
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:$HP
  tcp-request connection reject unless { src -f $d/allow.lst }
  default_backend be
backend be
  server up 127.0.0.1:$UP
EOF
  haproxy -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 &
  pids+=($!)
  wait_port "$HP"

  peers="direct:127.0.0.1:$UP apiwall:127.0.0.1:$GP haproxy:127.0.0.1:$HP"
  if ((n <= 100000)); then
    NP=$(port)
    {
      echo "load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
      echo "daemon off; worker_processes 2; pid $d/nginx.pid; error_log $d/nginx.err;"
      echo "worker_rlimit_nofile 16384;"
      echo "events { worker_connections 8192; }"
      echo "stream { server { listen 127.0.0.1:$NP; include $d/nginx-allow.conf; deny all; proxy_half_close on; proxy_pass 127.0.0.1:$UP; } }"
    } >"$d/nginx.conf"
    sed 's/^/allow /; s/$/;/' "$d/allow.lst" >"$d/nginx-allow.conf"
    nginx -p "$d" -e "$d/nginx.err" -c "$d/nginx.conf" &
    pids+=($!)
    wait_port "$NP"
    peers="$peers nginx:127.0.0.1:$NP"
  fi

  for rep in $(seq 1 "$REPS"); do
    for p in $peers; do
      echo "   round $rep: ${p%%:*}" >&2
      run_peer "${p%%:*}" "$n" "${p#*:}"
    done
  done

  kill "${pids[@]:1}" 2>/dev/null || true
  wait "${pids[@]:1}" 2>/dev/null || true
  pids=("${pids[0]}")
done

# Medians and ratios.
{
  echo "| prefixes | peer | denied conn/s | admitted p50 (µs) | admitted p99 (µs) | throughput (MiB/s) | denied vs HAProxy | p99 vs HAProxy | throughput vs direct |"
  echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  sort -k2,2n -k1,1 -k3,3 -k4,4g "$results" | awk '
    { key = $2 " " $1 " " $3; vals[key] = vals[key] " " $4; sizes[$2] = 1; peers[$1] = 1 }
    function median(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n == 0 ? "" : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
    }
    END {
      split("direct apiwall haproxy nginx", order, " ")
      ns = 0; for (s in sizes) sz[++ns] = s + 0
      for (i = 1; i <= ns; i++) for (j = i + 1; j <= ns; j++) if (sz[j] < sz[i]) { t = sz[i]; sz[i] = sz[j]; sz[j] = t }
      for (i = 1; i <= ns; i++) {
        s = sz[i]
        hd = median(vals[s " haproxy deny"]); h99 = median(vals[s " haproxy p99"]); dt = median(vals[s " direct tput"])
        for (k = 1; k <= 4; k++) {
          p = order[k]
          if (vals[s " " p " p50"] == "") continue
          d = median(vals[s " " p " deny"]); p50 = median(vals[s " " p " p50"]); p99 = median(vals[s " " p " p99"]); tp = median(vals[s " " p " tput"])
          printf "| %d | %s | %s | %.0f | %.0f | %.0f | %s | %s | %s |\n", s, p, (d == "" ? "–" : sprintf("%.0f", d)), p50, p99, tp,
            (d == "" || hd == "" ? "–" : sprintf("%.2f×", d / hd)), (h99 == "" ? "–" : sprintf("%.2f×", p99 / h99)), (dt == "" ? "–" : sprintf("%.2f×", tp / dt))
        }
      }
    }'
} | tee "$OUT"
echo "raw results: $(wc -l <"$results") lines; table written to $OUT" >&2

#!/usr/bin/env bash
# ICAP overhead (issue 16; docs/icap.md): Squid alone vs Squid asking likeguard over ICAP, and
# one-face image uploads through Squid + ICAP vs through likeguard's own proxy. Everything on
# 127.0.0.1, bounded in time, stopped on exit. Prints a Markdown table (benches/RESULTS.md).
#
#   benches/icap/run.sh [seconds]     wrk runs of `seconds` each (default 10); 200 uploads each way
#
# Needs `likeguard models fetch`, squid, nginx-light (scripts/setup-system) and wrk
# (scripts/setup-system --bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
target=${CARGO_TARGET_DIR:-target}
testdata=${LIKEGUARD_TESTDATA:-$(pwd)/../shared/testdata}
command -v wrk >/dev/null || { echo "wrk not found: scripts/setup-system --bench" >&2; exit 1; }
cargo build --release --locked --quiet --bin likeguard
bin=$target/release/likeguard

UP=18301 LG=18303 LGA=19303 ICAP=18344 SQ=18380 SQ0=18381
for port in $UP $LG $LGA $ICAP $SQ $SQ0; do
  if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is in use" >&2; exit 1; fi
done
work=$(mktemp -d)
chmod 0777 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The origin: nginx, a small JSON document and an upload sink.
mkdir -p "$work/www/v1" "$work/nginx"
printf '{"images": [], "note": "%s"}' "$(head -c 600 /dev/zero | tr '\0' 'x')" > "$work/www/v1/list.json"
cat > "$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP;
    root $work/www;
    location /upload/ { client_max_body_size 64m; return 200 "ok"; }
  }
}
CONF
nginx -c "$work/nginx.conf" & pids+=($!)

# likeguard: uploads inspected on the request side, /v1/ on the response side.
cat > "$work/lg.yaml" <<CONF
listen: 127.0.0.1:$LG
admin: {listen: 127.0.0.1:$LGA}
state_dir: $work/state
icap: {listen: 127.0.0.1:$ICAP}
routes:
  - name: upload
    match: {path_prefix: /upload/}
    upstream: http://127.0.0.1:$UP
    inspect: {direction: request, time_budget: 20s}
  - name: api
    match: {path_prefix: /v1/}
    upstream: http://127.0.0.1:$UP
    inspect: {direction: response}
  - name: rest
    upstream: http://127.0.0.1:$UP
    inspect: {direction: none}
CONF
# Someone enrolled, so an upload's face is searched for (the upload itself shows someone else).
LIKEGUARD_LOG=warn LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" identity --config "$work/lg.yaml" add \
  --name 'Bench Person' "$testdata/images/faces/deepface/img2.jpg" >/dev/null
LIKEGUARD_ADMIN_TOKEN=t LIKEGUARD_LOG=error LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" serve --config "$work/lg.yaml" & pids+=($!)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$LGA/readyz" >/dev/null && break; sleep 0.1; done

# Squid as a reverse proxy (accel) in front of the origin: one alone, one asking likeguard.
squid_conf() { # port name [icap]
  cat <<CONF
http_port 127.0.0.1:$1 accel defaultsite=127.0.0.1:$UP no-vhost
cache_peer 127.0.0.1 parent $UP 0 no-query originserver name=origin
cache_peer_access origin allow all
visible_hostname bench-$2
pid_filename $work/squid-$2.pid
cache_log $work/squid-$2.log
access_log none
netdb_filename none
coredump_dir $work
cache deny all
cache_mem 8 MB
http_access allow all
shutdown_lifetime 0 seconds
via off
CONF
  if [[ ${3:-} == icap ]]; then
    cat <<CONF
icap_enable on
icap_send_client_ip on
icap_persistent_connections on
icap_preview_enable on
icap_service lg_req reqmod_precache icap://127.0.0.1:$ICAP/reqmod bypass=off
icap_service lg_resp respmod_precache icap://127.0.0.1:$ICAP/respmod bypass=off
adaptation_access lg_req allow all
adaptation_access lg_resp allow all
CONF
  fi
}
squid_conf $SQ0 alone > "$work/alone.conf"
squid_conf $SQ icap icap > "$work/icap.conf"
squid -N -n lgalone -f "$work/alone.conf" & pids+=($!)
squid -N -n lgicap -f "$work/icap.conf" & pids+=($!)
for port in $SQ0 $SQ $UP; do
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
curl -sf "http://127.0.0.1:$SQ/v1/list.json" >/dev/null

rate() { wrk -t2 -c32 -d"${secs}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
errors() { wrk -t2 -c32 -d2s "$1" | grep -c 'Non-2xx' || true; }
alone=$(rate "http://127.0.0.1:$SQ0/v1/list.json")
icap=$(rate "http://127.0.0.1:$SQ/v1/list.json")
[[ $(errors "http://127.0.0.1:$SQ/v1/list.json") == 0 ]] || { echo "non-2xx answers through ICAP" >&2; exit 1; }

# Uploads: 200 sequential one-face JPEG uploads on one keep-alive connection each way.
python3 - "$testdata/images/faces/deepface/img20.jpg" "$LG" "$SQ" > "$work/uploads.txt" <<'PY'
import http.client, statistics, sys, time
photo = open(sys.argv[1], "rb").read()
def run(port, n=200, warm=10):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    times = []
    for i in range(n + warm):
        t = time.perf_counter()
        c.request("POST", "/upload/photo", body=photo, headers={"Content-Type": "image/jpeg"})
        r = c.getresponse(); r.read()
        if r.status != 200:
            sys.exit(f"upload through port {port}: {r.status}")
        if i >= warm:
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]
p50, p95 = run(sys.argv[2]); print(f"proxy {p50:.1f} {p95:.1f}")
p50, p95 = run(sys.argv[3]); print(f"icap {p50:.1f} {p95:.1f}")
PY
read -r _ pp50 pp95 < <(grep '^proxy' "$work/uploads.txt")
read -r _ ip50 ip95 < <(grep '^icap' "$work/uploads.txt")

ratio=$(awk -v a="$alone" -v b="$icap" 'BEGIN {printf "%.2f", b / a}')
delta=$(awk -v a="$pp50" -v b="$ip50" 'BEGIN {printf "%.1f", b - a}')
echo "| measurement | value |"
echo "|---|---|"
echo "| non-media GET, Squid alone (req/s, wrk 2 threads × 32 connections, ${secs} s) | $alone |"
echo "| non-media GET, Squid + likeguard ICAP (REQMOD 204 + RESPMOD 204 from the preview) | $icap |"
echo "| ratio (floor ≥ 0.80) | $ratio |"
echo "| one-face JPEG upload, likeguard proxy: p50 / p95 ms (200 sequential) | $pp50 / $pp95 |"
echo "| one-face JPEG upload, Squid + likeguard ICAP: p50 / p95 ms | $ip50 / $ip95 |"
echo "| ICAP p50 − proxy p50 (floor ≤ 5 ms) | $delta |"

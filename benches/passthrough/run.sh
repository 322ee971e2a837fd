#!/usr/bin/env bash
# Pass-through overhead, side by side in one run against the same upstream on loopback:
#   direct upstream  |  nginx proxy_pass  |  bare pingora (no hooks)  |  likeguard (pass-through
#   route: pingora's proxy path with likeguard's admission, normalisation and routing)
# plus likeguard's inspected (hold-mode) route, GETs and 1 MB non-media bodies.
# Load generator: wrk. Everything listens on 127.0.0.1, each run is time-bounded, all
# processes are stopped on exit. Needs: scripts/setup-system --bench, a release build.
#
#   benches/passthrough/run.sh [seconds-per-run]      (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
bin=${LIKEGUARD_BIN:-${CARGO_TARGET_DIR:-target}/release/likeguard}
bare=${CARGO_TARGET_DIR:-target}/release/examples/bare_pingora
[[ -x $bin && -x $bare ]] || { echo "build first: cargo build --release --bin likeguard --example bare_pingora" >&2; exit 1; }
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "run scripts/setup-system --bench" >&2; exit 1; }

UP=18001 NGX=18002 LG=18003 LGA=19003 BARE=18006
for port in $UP $NGX $LG $LGA $BARE; do
  if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is in use: stop what listens there" >&2; exit 1; fi
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The upstream: nginx answering "ok" (fast enough not to be the bottleneck).
mkdir -p "$work/up" "$work/ngx"
cat > "$work/up/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/up/pid; error_log $work/up/err.log;
events { worker_connections 4096; }
http { access_log off; client_max_body_size 64m; client_body_buffer_size 2m;
  server { listen 127.0.0.1:$UP; keepalive_requests 1000000;
    location / { return 200 "ok"; } } }
CONF
# The reference proxy: nginx proxy_pass with upstream keep-alive, one worker.
cat > "$work/ngx/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/ngx/pid; error_log $work/ngx/err.log;
events { worker_connections 4096; }
http { access_log off; client_max_body_size 64m; client_body_buffer_size 2m;
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGX; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$work/lg.yaml" <<CONF
listen: 127.0.0.1:$LG
workers: 1
admin: {listen: 127.0.0.1:$LGA}
state_dir: $work/state
inference: {enabled: false}
routes:
  - name: hold
    match: {path_prefix: /hold}
    upstream: http://127.0.0.1:$UP
    inspect: {direction: request, mode: hold}
  - name: plain
    upstream: http://127.0.0.1:$UP
    inspect: {direction: none}
CONF
nginx -p "$work/up" -c "$work/up/nginx.conf" & pids+=($!)
nginx -p "$work/ngx" -c "$work/ngx/nginx.conf" & pids+=($!)
LIKEGUARD_LOG=off "$bin" serve --config "$work/lg.yaml" & pids+=($!)
"$bare" 127.0.0.1:$BARE 127.0.0.1:$UP 2>/dev/null & pids+=($!)
for port in $UP $NGX $LG $BARE; do
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

printf 'wrk.method = "POST"\nwrk.body = string.rep("a", 1048576)\nwrk.headers["Content-Type"] = "text/plain"\n' > "$work/text1m.lua"
printf 'wrk.method = "POST"\nwrk.body = string.rep("\\0", 1048576)\nwrk.headers["Content-Type"] = "application/octet-stream"\n' > "$work/bin1m.lua"

# One keep-alive connection alternating the pass-through and the inspected route.
printf 'local n = 0\nrequest = function()\n  n = n + 1\n  if n %% 2 == 0 then return wrk.format("GET", "/hold") end\n  return wrk.format("GET", "/plain")\nend\n' > "$work/alternate.lua"

# run LABEL URL CONNECTIONS [LUA]
run() {
  local label=$1 url=$2 conns=$3 lua=${4:-}
  local args=(-t1 -c"$conns" -d"${secs}s" --latency)
  [[ -n $lua ]] && args+=(-s "$lua")
  wrk "${args[@]}" "$url" > "$work/out" 2>&1 || true
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/out")
  p50=$(awk '$1=="50%" {print $2}' "$work/out")
  p99=$(awk '$1=="99%" {print $2}' "$work/out")
  errs=$(awk '/Non-2xx/ {print $NF}' "$work/out"); errs=${errs:-0}
  printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$conns" "$rps" "$p50" "$p99" "$errs"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME"), $(uname -r)"
echo "likeguard $("$bin" --version | awk '{print $2}'), $(nginx -v 2>&1 | sed 's/.*: //'), wrk 1 thread, ${secs}s per run"
echo
echo "| target | conns | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
# warm-up
wrk -t1 -c8 -d2s "http://127.0.0.1:$LG/plain" >/dev/null 2>&1 || true
wrk -t1 -c8 -d2s "http://127.0.0.1:$NGX/plain" >/dev/null 2>&1 || true
for conns in 1 16; do
  run "direct upstream (GET)" "http://127.0.0.1:$UP/plain" "$conns"
  run "nginx proxy_pass (GET)" "http://127.0.0.1:$NGX/plain" "$conns"
  run "bare pingora, no hooks (GET)" "http://127.0.0.1:$BARE/plain" "$conns"
  run "likeguard pass-through route (GET)" "http://127.0.0.1:$LG/plain" "$conns"
  run "likeguard hold route, no body (GET)" "http://127.0.0.1:$LG/hold" "$conns"
  run "likeguard alternating pass-through / hold (GET)" "http://127.0.0.1:$LG/" "$conns" "$work/alternate.lua"
done
run "nginx proxy_pass (POST 1 MB text)" "http://127.0.0.1:$NGX/plain" 4 "$work/text1m.lua"
run "bare pingora (POST 1 MB text)" "http://127.0.0.1:$BARE/plain" 4 "$work/text1m.lua"
run "likeguard pass-through (POST 1 MB text)" "http://127.0.0.1:$LG/plain" 4 "$work/text1m.lua"
run "likeguard hold route (POST 1 MB text, streamed)" "http://127.0.0.1:$LG/hold" 4 "$work/text1m.lua"
run "likeguard hold route (POST 1 MB binary, held+sniffed)" "http://127.0.0.1:$LG/hold" 4 "$work/bin1m.lua"

# Interleaved rounds: this VM changes speed over minutes, so ratios are taken between runs made
# seconds apart, round by round (ROUNDS, default 5; 3 s per run).
rps_of() { wrk -t1 -c"$2" -d3s "$1" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
echo
echo "Interleaved GET rounds (req/s; likeguard = pass-through route):"
echo
echo "| round | conns | nginx | bare pingora | likeguard | likeguard ÷ nginx | likeguard ÷ bare |"
echo "|---|---|---|---|---|---|---|"
for conns in 16 1; do
  for r in $(seq "${ROUNDS:-5}"); do
    n=$(rps_of "http://127.0.0.1:$NGX/plain" "$conns")
    b=$(rps_of "http://127.0.0.1:$BARE/plain" "$conns")
    l=$(rps_of "http://127.0.0.1:$LG/plain" "$conns")
    awk -v r="$r" -v c="$conns" -v n="$n" -v b="$b" -v l="$l" \
      'BEGIN { printf "| %s | %s | %.0f | %.0f | %.0f | %.2f | %.2f |\n", r, c, n, b, l, l/n, l/b }'
  done
done

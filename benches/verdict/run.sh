#!/usr/bin/env bash
# One-face verdicts through the proxy: a 1024×768 JPEG with one (unenrolled, so fully searched)
# face POSTed to an inspected route (a new path each time, so no verdict comes from the cache) — decode, detect, align, embed, search, policy, then the
# upstream exchange. One client (latency) and four clients (throughput). wrk on 127.0.0.1,
# time-bounded, everything stopped on exit. Needs: scripts/setup-system --bench, a release build,
# `likeguard models fetch`.
#
#   benches/verdict/run.sh [seconds-per-run]      (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
bin=${LIKEGUARD_BIN:-${CARGO_TARGET_DIR:-target}/release/likeguard}
testdata=${LIKEGUARD_TESTDATA:-$(pwd)/../shared/testdata}
[[ -x $bin ]] || { echo "build first: cargo build --release --bin likeguard" >&2; exit 1; }
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "run scripts/setup-system --bench" >&2; exit 1; }

UP=18101 LG=18103 LGA=19103
for port in $UP $LG $LGA; do
  if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is in use" >&2; exit 1; fi
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The photo: a testdata face scaled to 1024×768 (aspect not kept: one face either way).
gst-launch-1.0 -q filesrc location="$testdata/images/faces/deepface/img1.jpg" ! jpegdec ! videoconvert \
  ! videoscale ! video/x-raw,width=1024,height=768 ! jpegenc quality=90 ! filesink location="$work/face.jpg"

mkdir -p "$work/up"
cat > "$work/up/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/up/pid; error_log $work/up/err.log;
events { worker_connections 1024; }
http { access_log off; client_max_body_size 64m; client_body_buffer_size 2m;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok"; } } }
CONF
cat > "$work/lg.yaml" <<CONF
listen: 127.0.0.1:$LG
admin: {listen: 127.0.0.1:$LGA}
state_dir: $work/state
routes:
  - name: upload
    upstream: http://127.0.0.1:$UP
    inspect: {direction: request}
CONF
# One enrolled person (not the one in the photo): with an empty registry face inspection is
# skipped, so every verdict here detects, embeds and searches.
LIKEGUARD_LOG=warn LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" identity --config "$work/lg.yaml" add \
  --name 'Bench Person' "$testdata/images/faces/deepface/img17.jpg" >/dev/null
nginx -p "$work/up" -c "$work/up/nginx.conf" & pids+=($!)
LIKEGUARD_LOG=warn LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" serve --config "$work/lg.yaml" & pids+=($!)
for port in $UP $LG; do
  for _ in $(seq 300); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
# A new path per request: the face inspector caches verdicts by (media, path, requester, ...),
# and this bench measures verdicts, not cache hits.
cat > "$work/post.lua" <<LUA
local f = io.open("$work/face.jpg", "rb"); local body = f:read("*all"); f:close()
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/upload/" .. n, {["Content-Type"] = "image/jpeg"}, body)
end
LUA
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: image/jpeg' --data-binary @"$work/face.jpg" "http://127.0.0.1:$LG/upload")
[[ $code == 200 ]] || { echo "warm-up request answered $code" >&2; exit 1; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME")"
echo "likeguard $("$bin" --version | awk '{print $2}'), photo $(stat -c %s "$work/face.jpg") bytes, wrk 1 thread, ${secs}s per run"
echo
echo "| clients | verdicts/s | p50 | p90 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
wrk -t1 -c2 -d3s -s "$work/post.lua" "http://127.0.0.1:$LG/upload" >/dev/null 2>&1 || true
for conns in 1 4; do
  wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" "http://127.0.0.1:$LG/upload" > "$work/out" 2>&1 || true
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/out")
  p50=$(awk '$1=="50%" {print $2}' "$work/out"); p90=$(awk '$1=="90%" {print $2}' "$work/out")
  p99=$(awk '$1=="99%" {print $2}' "$work/out")
  errs=$(awk '/Non-2xx/ {print $NF}' "$work/out"); errs=${errs:-0}
  printf '| %s | %s | %s | %s | %s | %s |\n' "$conns" "$rps" "$p50" "$p90" "$p99" "$errs"
done

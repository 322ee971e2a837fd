#!/usr/bin/env bash
# Load, soak and upstream faults through a release likeguard (issue 18; docs/reliability.md).
# Everything on 127.0.0.1, bounded in time, stopped on exit.
#
#   benches/load/run.sh load  [connections] [seconds]   mixed traffic (default 1000 × 60 s)
#   benches/load/run.sh soak  [seconds]                 inspected uploads, 50 connections (600 s)
#   benches/load/run.sh upstream MODE [connections] [seconds]
#                       MODE: slow | slow-accept | reset | malformed (default 1000 × 30 s)
#   benches/load/run.sh smoke                          100 connections × 10 s (CI)
#
# Needs `likeguard models fetch`; builds what it runs (release; LIKEGUARD_PROFILE=debug for the
# CI smoke).
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-load}; shift || true
target=${CARGO_TARGET_DIR:-target}
profile=${LIKEGUARD_PROFILE:-release}
testdata=${LIKEGUARD_TESTDATA:-$(pwd)/../shared/testdata}
if [[ $profile == release ]]; then
  cargo build --release --locked --quiet --bin likeguard --bench load
else
  cargo build --locked --quiet --bin likeguard --bench load
fi
bin=${LIKEGUARD_BIN:-$target/$profile/likeguard}
load=$(ls -t "$target/$profile"/deps/load-* | grep -v '\.d$' | head -1)

UP=18201 LG=18203 LGA=19203
for port in $UP $LG $LGA; do
  if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is in use" >&2; exit 1; fi
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # 1,000 clients: ~3,000 fds in the proxy

# A face that is enrolled (unlicensed: 451) and a photo without one (200).
cp "$testdata/images/faces/deepface/img1.jpg" "$work/face.jpg"
cp "$testdata/images/noface/insightface/mask_blue.jpg" "$work/noface.jpg"
cat > "$work/lg.yaml" <<CONF
listen: 127.0.0.1:$LG
admin: {listen: 127.0.0.1:$LGA}
state_dir: $work/state
timeouts: {client_read: 5s, client_body: 20s, upstream_response: 5s, shutdown_grace: 10s}
routes:
  - name: pass
    match: {path_prefix: /pass/}
    upstream: http://127.0.0.1:$UP
    inspect: {direction: none}
  - name: upload
    match: {path_prefix: /upload/}
    upstream: http://127.0.0.1:$UP
    inspect: {direction: request, time_budget: 20s}
CONF
LIKEGUARD_LOG=warn LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" identity --config "$work/lg.yaml" add \
  --name 'Load Person' "$testdata/images/faces/deepface/img2.jpg" >/dev/null
LIKEGUARD_ADMIN_TOKEN=t LIKEGUARD_LOG=error LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" serve --config "$work/lg.yaml" & pids+=($!)
lg=${pids[-1]}
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$LGA/readyz" >/dev/null && break; sleep 0.1; done

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME")"
echo "likeguard $("$bin" --version | awk '{print $2}') ($profile), load generator in-process upstream (hyper)"
common=(--bench --proxy "127.0.0.1:$LG" --upstream "127.0.0.1:$UP" --pid "$lg" --face "$work/face.jpg" --noface "$work/noface.jpg")
case $what in
  load) "$load" "${common[@]}" --connections "${1:-1000}" --seconds "${2:-60}" ;;
  # Warm-up: the decision cache fills to its 10,000-entry bound in ~4 minutes at this rate.
  soak) "$load" "${common[@]}" --connections 50 --slow 0 --leavers 0 --mix uploads --seconds "${1:-600}" --warmup 240 ;;
  upstream) "$load" "${common[@]}" --upstream-mode "${1:?mode}" --connections "${2:-1000}" --seconds "${3:-30}" --mix pass ;;
  smoke) "$load" "${common[@]}" --connections 100 --slow 5 --leavers 5 --seconds 10 ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
echo "metrics after the run:"
curl -s -H 'authorization: Bearer t' "http://127.0.0.1:$LGA/metrics" \
  | grep -E '^likeguard_(errors_total|decision_cache_entries|known_media_entries|decisions_total)' || true

#!/usr/bin/env bash
# The decision log's cost on the verdict (issue 19 floor: ≤ 0.2 ms p99 added at 500 decisions/s,
# nothing dropped). The same enrolled face POSTed at a fixed rate through a release likeguard
# (every request is a 451, so every one is a decision the log keeps; the verdict itself comes
# from the face-decision cache, so the log's share is not hidden under inference). Three
# setups, each run twice, interleaved: log off, embedded (SQLite), fleet (SQLite + Redis
# Stream). Open-loop client (benches/decision_log_load.rs), nginx upstream, all on 127.0.0.1,
# time-bounded, stopped on exit. Needs scripts/setup-system --bench and `likeguard models fetch`.
#
#   benches/decision_log/run.sh [seconds-per-run] [rate]     (default 20 s, 500/s)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}; rate=${2:-500}
target=${CARGO_TARGET_DIR:-target}
testdata=${LIKEGUARD_TESTDATA:-$(pwd)/../shared/testdata}
cargo build --release --locked --quiet --bin likeguard --bench decision_log_load
bin=$target/release/likeguard
load=$(ls -t "$target"/release/deps/decision_log_load-* | grep -v '\.d$' | head -1)
command -v nginx >/dev/null || { echo "run scripts/setup-system --bench" >&2; exit 1; }
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "needs Redis on 127.0.0.1:6379" >&2; exit 1; }

UP=18301 LG=18303 LGA=19303
for port in $UP $LG $LGA; do
  if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is in use" >&2; exit 1; fi
done
work=$(mktemp -d)
pids=()
prefix="likeguard-bench-$$"
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$prefix*" | xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/up"
cat > "$work/up/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/up/pid; error_log $work/up/err.log;
events { worker_connections 1024; }
http { access_log off; client_max_body_size 64m; client_body_buffer_size 2m;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok"; } } }
CONF
nginx -p "$work/up" -c "$work/up/nginx.conf" & pids+=($!)
cp "$testdata/images/faces/deepface/img6.jpg" "$work/face.jpg"

config() { # mode → config file
  local mode=$1 f="$work/$1.yaml"
  {
    echo "listen: 127.0.0.1:$LG"
    echo "admin: {listen: 127.0.0.1:$LGA}"
    echo "state_dir: $work/state-$mode"
    case $mode in
      off) echo "decision_log: {enabled: false}" ;;
      embedded) echo "decision_log: {enabled: true}" ;;
      redis) echo "decision_log: {enabled: true}"
             echo "store: {kind: redis, url: 'redis://127.0.0.1:6379', prefix: '$prefix'}" ;;
    esac
    echo "routes:"
    echo "  - name: upload"
    echo "    upstream: http://127.0.0.1:$UP"
    echo "    inspect: {direction: request, time_budget: 20s}"
  } > "$f"
  echo "$f"
}
for mode in off embedded redis; do
  LIKEGUARD_LOG=warn LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" identity --config "$(config $mode)" add \
    --name 'Bench Person' "$testdata/images/faces/deepface/img1.jpg" "$testdata/images/faces/deepface/img2.jpg" >/dev/null
done

metric() { curl -s -H 'authorization: Bearer t' "http://127.0.0.1:$LGA/metrics" | awk -v m="$1" 'index($1, m) == 1 {s += $2} END {print s + 0}'; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME")"
echo "likeguard $("$bin" --version | awk '{print $2}'), ${rate}/s for ${secs}s per run, photo $(stat -c %s "$work/face.jpg") bytes (451 each)"
echo
echo "| run | log | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | unexpected | written | dropped | log's share, p99 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
run=0
for round in 1 2; do
  for mode in off embedded redis; do
    run=$((run + 1))
    LIKEGUARD_ADMIN_TOKEN=t LIKEGUARD_LOG=warn LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" serve --config "$work/$mode.yaml" & lg=$!
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$LGA/readyz" >/dev/null && break; sleep 0.1; done
    # Warm the face-decision cache and the connection pool.
    "$load" --bench --proxy "127.0.0.1:$LG" --body "$work/face.jpg" --rate 100 --seconds 2 >/dev/null
    before=$(metric 'likeguard_decision_log_written_total{sink="sqlite"}')
    out=$("$load" --bench --proxy "127.0.0.1:$LG" --body "$work/face.jpg" --rate "$rate" --seconds "$secs")
    sleep 1
    written=$(( $(metric 'likeguard_decision_log_written_total{sink="sqlite"}') - before ))
    dropped=$(metric likeguard_decision_log_dropped_total)
    # The log's own share of each verdict, measured in the proxy: the histogram bucket that
    # holds the 99th percentile of likeguard_decision_log_record_seconds (an upper bound).
    inproc=$(curl -s -H 'authorization: Bearer t' "http://127.0.0.1:$LGA/metrics" | python3 -c '
import re, sys
b = [(float(m.group(1)), float(m.group(2))) for m in re.finditer(r"likeguard_decision_log_record_seconds_bucket\{le=\"([^\"]+)\"\} (\S+)", sys.stdin.read())]
total = b[-1][1] if b else 0
print("-" if not total else next(f"<= {le * 1e6:g} us" for le, n in b if n >= 0.99 * total))')
    kill "$lg"; wait "$lg" 2>/dev/null || true
    python3 - "$run" "$mode" "$written" "$dropped" "$out" "$inproc" <<'PY'
import json, sys
run, mode, written, dropped, out, inproc = sys.argv[1:7]
r = json.loads(out)
print(f"| {run} | {mode} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['max_ms']:.2f} | {r['unexpected']} | {written if mode != 'off' else '-'} | {dropped if mode != 'off' else '-'} | {inproc if mode != 'off' else '-'} |")
PY
  done
done

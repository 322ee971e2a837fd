#!/usr/bin/env bash
# Discovery under load it was built for: a training-data upload (a zip of 500 real photos) on a
# route sized for it and on the default route, and the bombs (a 42.zip-style nest, a gzip bomb,
# deeply nested JSON) on the default route — status, time and likeguard's peak RSS. 127.0.0.1
# only, one request at a time, everything stopped on exit. Needs a release build, `likeguard
# models fetch`, nginx and python3.
#
#   benches/discovery/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${LIKEGUARD_BIN:-${CARGO_TARGET_DIR:-target}/release/likeguard}
testdata=${LIKEGUARD_TESTDATA:-$(pwd)/../shared/testdata}
[[ -x $bin ]] || { echo "build first: cargo build --release --bin likeguard" >&2; exit 1; }

UP=18201 LG=18203 LGA=19203
for port in $UP $LG $LGA; do
  if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is in use" >&2; exit 1; fi
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The payloads, built with Python's standard library.
python3 - "$testdata" "$work" <<'PY'
import glob, gzip, io, os, sys, zipfile
testdata, work = sys.argv[1], sys.argv[2]
# Every face photo except the deepface set (the enrolled person is in it: a block would end
# the inspection at the first match). Repeats get a unique trailer after the JPEG's end, so no
# verdict comes from the cache.
photos = sorted(p for p in glob.glob(f"{testdata}/images/faces/**/*.jpg", recursive=True)
                if "/deepface/" not in p)
with zipfile.ZipFile(f"{work}/train.zip", "w", zipfile.ZIP_STORED) as z:
    for i in range(500):
        with open(photos[i % len(photos)], "rb") as f:
            z.writestr(f"train/{i:03}.jpg", f.read() + f"repeat {i}".encode())
# 42.zip-style: 16 zips of 16 zips of ... of 64 MiB of zeros (deflated).
inner = io.BytesIO()
with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("zeros", b"\0" * (64 << 20))
level = inner.getvalue()
for _ in range(4):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(16):
            z.writestr(f"{i}.zip", level)
    level = out.getvalue()
open(f"{work}/42.zip", "wb").write(level)
# gzip bomb: 1 GiB of zeros as gzip members of 16 MiB.
member = gzip.compress(b"\0" * (16 << 20), 9)
open(f"{work}/bomb.gz", "wb").write(member * 64)
open(f"{work}/deep.json", "w").write("[" * 1_000_000)
PY

mkdir -p "$work/up"
cat > "$work/up/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/up/pid; error_log $work/up/err.log;
events { worker_connections 64; }
http { access_log off; client_max_body_size 128m; client_body_buffer_size 64m;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok"; } } }
CONF
cat > "$work/lg.yaml" <<CONF
listen: 127.0.0.1:$LG
admin: {listen: 127.0.0.1:$LGA}
state_dir: $work/state
# Every member is detected, embedded and searched; the match threshold is raised out of reach
# so that no match (true or false) ends the inspection early — this measures the full cost.
inference: {match_threshold: 0.99}
routes:
  - name: training
    match: {path_prefix: /train}
    upstream: http://127.0.0.1:$UP
    inspect: {direction: request, max_body: 128MiB, max_items: 1000, time_budget: 300s,
              extract: {max_expanded: 256MiB}}
  - name: default
    upstream: http://127.0.0.1:$UP
    inspect: {direction: request}
CONF
LIKEGUARD_LOG=warn LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" identity --config "$work/lg.yaml" add \
  --name 'Bench Person' "$testdata/images/faces/deepface/img1.jpg" >/dev/null
nginx -p "$work/up" -c "$work/up/nginx.conf" & pids+=($!)
LIKEGUARD_LOG=${LIKEGUARD_LOG:-warn} LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" serve --config "$work/lg.yaml" & lgpid=$!; pids+=($lgpid)
for port in $UP $LG; do
  for _ in $(seq 300); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$lgpid/status"; }
hwm() { awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' "/proc/$lgpid/status"; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME")"
echo "likeguard $("$bin" --version | awk '{print $2}'); RSS at start $(rss)"
echo
echo "| payload | size | route | status | time | peak RSS after |"
echo "|---|---|---|---|---|---|"
send() { # name file content-type path [extra header]
  local extra=(); [[ -n ${5:-} ]] && extra=(-H "$5")
  local out
  out=$(curl -s -o "$work/answer" -w '%{http_code} %{time_total}' -H "content-type: $3" "${extra[@]}" \
    --data-binary @"$2" "http://127.0.0.1:$LG$4")
  printf '| %s | %s | %s | %s | %.2f s | %s |\n' "$1" "$(numfmt --to=iec-i --suffix=B "$(stat -c %s "$2")")" \
    "$4" "${out% *}" "${out#* }" "$(hwm)"
}
send "zip of 500 photos" "$work/train.zip" application/zip /train/upload
send "zip of 500 photos" "$work/train.zip" application/zip /upload
send "42.zip-style nest" "$work/42.zip" application/zip /upload
send "gzip bomb (1 GiB)" "$work/bomb.gz" application/json /upload "content-encoding: gzip"
send "JSON nested 1,000,000 deep" "$work/deep.json" application/json /upload
echo
echo "statuses: 200 = inspected and passed; 413 = more items than the route allows;"
echo "400 = malformed;"
echo "503 = a bound (max_expanded, depth, time) reached, fail_closed. RSS now $(rss)."

#!/usr/bin/env bash
# Whole-video decisions through the proxy (issue 21's floor: a 1080p H.264 clip at the default
# 1 fps sampling decided at ≥ 20× real time on 2 cores). Each clip is POSTed to an inspected
# route (a new path each time: no verdict from the cache) with one person enrolled (someone
# else, so every sampled frame is detected, embedded and searched); the median of N runs is
# compared with the clip's duration, and with gst-launch-1.0 decoding the same clip the same
# way (every frame, and key frames only). 127.0.0.1 only; everything stops on exit.
# Needs: a build of likeguard (release by default; LIKEGUARD_PROFILE=debug), `likeguard models
# fetch`, nginx (scripts/setup-system).
#
#   benches/video/run.sh [runs-per-clip]      (default 5)
#   SKIP_DELTA=true benches/video/run.sh     with media.sampling.skip_delta_frames (trusted
#                                             sources only: docs/media.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
skip_delta=${SKIP_DELTA:-false}
profile=${LIKEGUARD_PROFILE:-release}
bin=${LIKEGUARD_BIN:-${CARGO_TARGET_DIR:-target}/$profile/likeguard}
testdata=${LIKEGUARD_TESTDATA:-$(pwd)/../shared/testdata}
[[ -x $bin ]] || { echo "build first: cargo build --${profile/debug/dev} --bin likeguard (or set LIKEGUARD_BIN)" >&2; exit 1; }

UP=18201 LG=18203 LGA=19203
for port in $UP $LG $LGA; do
  if (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is in use" >&2; exit 1; fi
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Clips: a real 1080p clip as it comes (x264, a key frame every 10 s), the same re-encoded the
# way phones and cameras write (a key frame every second, B-frames off, ~10 Mb/s), and a
# 1080p, 30 fps, 60 s phone-style clip made of the real one looped.
src="$testdata/deepfake/icpr2020dfdc_samples/lynaeydofd.mp4"
cp "$src" "$work/dfdc-1080p-10s.mp4"
gst-launch-1.0 -q filesrc location="$src" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert \
  ! x264enc speed-preset=veryfast bitrate=10000 key-int-max=30 bframes=0 ! mp4mux \
  ! filesink location="$work/phone-1080p-10s.mp4"
gst-launch-1.0 -q concat name=c ! videoconvert ! x264enc speed-preset=ultrafast bitrate=10000 key-int-max=30 bframes=0 \
  ! mp4mux ! filesink location="$work/phone-1080p-60s.mp4" \
  $(for _ in 1 2 3 4 5 6; do printf 'filesrc location=%s ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! c. ' "$src"; done)

mkdir -p "$work/up"
cat > "$work/up/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/up/pid; error_log $work/up/err.log;
events { worker_connections 64; }
http { access_log off; client_max_body_size 256m; client_body_buffer_size 64m;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok"; } } }
CONF
cat > "$work/lg.yaml" <<CONF
listen: 127.0.0.1:$LG
admin: {listen: 127.0.0.1:$LGA}
state_dir: $work/state
media: {sampling: {skip_delta_frames: $skip_delta}}
routes:
  - name: upload
    upstream: http://127.0.0.1:$UP
    inspect: {direction: request, max_body: 128MiB, time_budget: 60s}
CONF
LIKEGUARD_LOG=warn LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" identity --config "$work/lg.yaml" add \
  --name 'Bench Person' "$testdata/images/faces/deepface/img17.jpg" >/dev/null
nginx -p "$work/up" -c "$work/up/nginx.conf" & pids+=($!)
LIKEGUARD_LOG=warn LIKEGUARD_MODELS_DIR="$(pwd)/models" "$bin" serve --config "$work/lg.yaml" & pids+=($!)
for port in $UP $LG; do
  for _ in $(seq 300); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
secs_of() { # duration in seconds, as likeguard reads it
  LIKEGUARD_LOG=error "$bin" scan --no-faces --json "$1" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["duration_s"])'
}
gst_time() { # median wall seconds of a gst-launch decode
  local desc=$1 i
  for i in $(seq "$runs"); do
    /usr/bin/time -f %e gst-launch-1.0 -q $desc 2>&1 >/dev/null | tail -1
  done | median
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME")"
echo "likeguard $("$bin" --version | awk '{print $2}') ($profile build), sampling 1 fps / 32 frames, skip_delta_frames: $skip_delta, median of $runs runs"
echo
echo "| clip | bytes | duration | decided in (p50) | × real time | gst-launch every frame | gst-launch key frames only | answer |"
echo "|---|---|---|---|---|---|---|---|"
n=0
for clip in dfdc-1080p-10s phone-1080p-10s phone-1080p-60s; do
  f="$work/$clip.mp4"
  dur=$(secs_of "$f")
  code=""
  t=$(for _ in $(seq "$runs"); do
    n=$((n + 1))
    out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -H 'content-type: video/mp4' \
      --data-binary @"$f" "http://127.0.0.1:$LG/upload/$n")
    echo "${out#* }"
    echo "${out% *}" > "$work/code"
  done | median)
  code=$(cat "$work/code")
  every=$(gst_time "filesrc location=$f ! qtdemux ! h264parse ! avdec_h264 ! fakesink")
  keys=$(gst_time "filesrc location=$f ! qtdemux ! h264parse ! identity drop-buffer-flags=delta-unit ! avdec_h264 ! fakesink")
  printf '| %s | %s | %.1f s | %.2f s | %.1f× | %.2f s | %.2f s | %s |\n' "$clip" "$(stat -c %s "$f")" "$dur" "$t" \
    "$(echo "$dur / $t" | bc -l)" "$every" "$keys" "$code"
done

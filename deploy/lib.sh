# Shared by deploy/check-image and deploy/compose-check (sourced, not run).
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/podman/containers.conf}"
testdata=${LIKEGUARD_TESTDATA:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/testdata}
# The person enrolled, another photo of them, and someone else (tests/identities.rs uses the same).
person=$testdata/images/faces/deepface/img1.jpg
person_again=$testdata/images/faces/deepface/img6.jpg
someone_else=$testdata/images/faces/deepface/img20.jpg

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ready ADMIN_URL SECONDS: until /readyz answers 200 with status "ready".
wait_ready() {
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    curl -fsS --max-time 2 "$1/readyz" 2>/dev/null | grep -q '"status":"ready"' && return 0
    sleep 0.2
  done
  return 1
}

# enrol ADMIN_URL TOKEN PHOTO: a strict identity from one photo; prints the HTTP status.
enrol() {
  curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -H "authorization: Bearer $2" \
    -F name="Deploy Check" -F protection=strict -F consent_by="the person" \
    -F consent_method="signed form" -F "photo=@$3;type=image/jpeg" "$1/admin/v1/identities"
}

# upload URL PHOTO: a multipart upload like a generation request; prints the HTTP status.
upload() {
  curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -F prompt="make it a painting" \
    -F "image=@$2;type=image/jpeg" "$1/upload"
}

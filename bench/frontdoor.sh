#!/usr/bin/env bash
# Front door, side by side on loopback: clawhold's door beside nginx (Debian)
# as a plain TLS reverse proxy and oauth2-proxy (built from the Go module
# proxy) as an authenticating one, all in front of the same trivial backend,
# in one run of the load generator ./bench/frontdoor:
#   - requests/s, CONC concurrent keep-alive clients for DURATION s per target
#   - latency p50/p99 µs with one client, added = target − direct backend
#     (LAT_N requests per target, targets interleaved request by request)
#   - WebSocket echo round trip p50/p99 µs, added = target − direct (WS_N
#     messages of 64 bytes per target, interleaved)
# Goal (issue): faster than oauth2-proxy, within 2× of plain nginx.
#
# Same protocol everywhere: TLS 1.3 (one ECDSA P-256 certificate for all
# three, made here), HTTP/1.1 with keep-alive (the client offers only
# http/1.1 by ALPN; the door would pick h2 otherwise), one request in flight
# per connection. The direct baseline is plain HTTP to the backend.
#
# Who is authenticated how:
#   - door: a user made with account.Service and a complete session made
#     with session.Manager.Create in the door's process (bench/frontdoor
#     door); its token is the __Host-clawhold_session cookie. Each request is
#     a session lookup in the SQLite system database plus opening the
#     session's sealed data.
#   - oauth2-proxy: OIDC provider "oidc" pointed at the repo's conforming
#     test provider (frontdoor/oidc/oidctest, run by bench/frontdoor
#     backend), cookie session store (its default). The load generator signs
#     in through oauth2-proxy's real flow (/oauth2/start → /authorize →
#     /oauth2/callback, PKCE S256, nonce checked) and sends the cookie
#     oauth2-proxy set; each request is a cookie decode (HMAC check, AES
#     decrypt, decompress, decode) and the email-domain check.
#   - Both are checked before measuring: a request without the cookie must
#     not reach the backend (the table shows the status it got).
#   - nginx: no authentication (the "plain reverse proxy" bar).
#
# Each peer runs in the foreground as a child of this script with a private
# config under a mktemp dir, on its own free loopback port, and is killed at
# the end. The table goes to stdout and bench/out/frontdoor.md; per-round
# JSON lines to bench/out/frontdoor.jsonl.
#
# Environment:
#   CONC=32 DURATION=10   requests/s clients and seconds per target
#   LAT_N=3000 WS_N=3000  latency requests / WebSocket messages per target
#   ROUNDS=1              repeat everything, report medians (3 on a busy box)
#   TESTS=rps,latency,ws
#   PROXY_ONLY=1          add the diagnostic row "door-proxy-only": the door's
#                         process, TLS config, security headers and proxy with
#                         a fixed identity instead of the session lookup (no
#                         authentication; it tells the lookup's cost apart)
#   OAUTH2_PROXY_VERSION=v7.15.6   built into .cache/bin (git-ignored)
#   KEEP=1                keep the temp dir (configs, logs)
#   DOOR_CPUPROFILE=file  write the door process's CPU profile (go tool pprof)
#   O2P_LOG=true          turn oauth2-proxy's auth and standard logs on (debugging)
set -euo pipefail
cd "$(dirname "$0")/.."

CONC=${CONC:-32}
DURATION=${DURATION:-10}
LAT_N=${LAT_N:-3000}
WS_N=${WS_N:-3000}
ROUNDS=${ROUNDS:-1}
TESTS=${TESTS:-rps,latency,ws}
PROXY_ONLY=${PROXY_ONLY:-1}
# The latest v7 release on the Go module proxy at the time of writing
# (2026-11-24); it builds with Go 1.26.
OAUTH2_PROXY_VERSION=${OAUTH2_PROXY_VERSION:-v7.15.6}

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null && echo "# had to SIGKILL pid $p" >&2 || true
    wait "$p" 2>/dev/null || true
  done
  if [[ ${KEEP:-0} == 1 ]]; then echo "# kept $work (configs, logs)" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v nginx >/dev/null; then
  echo "# installing nginx" >&2
  # Debian's postinst would start the system service; forbid that.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && rmrc=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >&2
  [[ -n ${rmrc:-} ]] && rm -f /usr/sbin/policy-rc.d
fi

o2p=$PWD/.cache/bin/oauth2-proxy
o2p_stamp=$PWD/.cache/bin/.oauth2-proxy.version
if [[ ! -x $o2p || $(cat "$o2p_stamp" 2>/dev/null) != "$OAUTH2_PROXY_VERSION" ]]; then
  echo "# building oauth2-proxy $OAUTH2_PROXY_VERSION from the Go module proxy" >&2
  mkdir -p .cache/bin
  GOBIN=$PWD/.cache/bin GOFLAGS=-buildvcs=false go install "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION" >&2
  echo "$OAUTH2_PROXY_VERSION" > "$o2p_stamp"
fi

go build -o "$work/fdbench" ./bench/frontdoor
read -r -d '' p_back p_door p_nginx p_o2p p_o2p_http p_ponly < <("$work/fdbench" free-ports -n 6; printf '\0') || true

# One certificate for all three: ECDSA P-256, SAN IP:127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 644 "$work/key.pem" # nginx workers (www-data) do not read it; the master does

# wait_port NAME PID PORT: wait until PORT accepts, or the child dies.
wait_port() {
  for _ in $(seq 150); do
    if ! kill -0 "$2" 2>/dev/null; then echo "# $1 exited before listening" >&2; return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "# $1 did not listen on 127.0.0.1:$3 within 15 s" >&2
  return 1
}
# fail NAME LOG...: show the logs and stop.
fail() { echo "# $1 failed:" >&2; shift; tail -n 20 "$@" >&2 || true; exit 1; }

# ---- the backend and the OIDC test provider ----
head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n' > "$work/oidc-secret" # no newline: oauth2-proxy reads the file verbatim
"$work/fdbench" backend -listen "127.0.0.1:$p_back" -oidc-redirect "https://127.0.0.1:$p_o2p/oauth2/callback" \
  -oidc-secret-file "$work/oidc-secret" -issuer-file "$work/issuer" > "$work/backend.log" 2>&1 &
pid=$!; pids+=("$pid")
wait_port backend "$pid" "$p_back" || fail backend "$work/backend.log"
for _ in $(seq 50); do [[ -s $work/issuer ]] && break; sleep 0.1; done
issuer=$(cat "$work/issuer")

# ---- clawhold's door ----
"$work/fdbench" door -listen "127.0.0.1:$p_door" -upstream "http://127.0.0.1:$p_back" \
  -cert "$work/cert.pem" -key "$work/key.pem" -dir "$work/door-data" -token-file "$work/door-token" \
  ${DOOR_CPUPROFILE:+-cpuprofile "$DOOR_CPUPROFILE"} \
  $([[ $PROXY_ONLY == 1 ]] && echo -proxy-only-listen "127.0.0.1:$p_ponly") \
  > "$work/door.log" 2>&1 &
pid=$!; pids+=("$pid")
wait_port door "$pid" "$p_door" || fail door "$work/door.log"
for _ in $(seq 50); do [[ -s $work/door-token ]] && break; sleep 0.1; done

# ---- nginx: plain TLS reverse proxy, keep-alive to the client and upstream ----
d=$work/nginx && mkdir -p "$d"
cat > "$d/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
  upstream backend {
    server 127.0.0.1:$p_back;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$p_nginx ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 600s;
    }
  }
}
EOF
nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" > "$d/stdout.log" 2>&1 &
pid=$!; pids+=("$pid")
wait_port nginx "$pid" "$p_nginx" || fail nginx "$d/stdout.log" "$d/error.log"

# ---- oauth2-proxy: OIDC against the test provider, cookie sessions ----
d=$work/oauth2-proxy && mkdir -p "$d"
"$o2p" \
  --https-address="127.0.0.1:$p_o2p" --http-address="127.0.0.1:$p_o2p_http" \
  --tls-cert-file="$work/cert.pem" --tls-key-file="$work/key.pem" \
  --upstream="http://127.0.0.1:$p_back/" \
  --provider=oidc --oidc-issuer-url="$issuer" \
  --client-id=frontdoor-bench --client-secret-file="$work/oidc-secret" \
  --redirect-url="https://127.0.0.1:$p_o2p/oauth2/callback" \
  --code-challenge-method=S256 --insecure-oidc-skip-nonce=false \
  --email-domain='*' --skip-provider-button \
  --cookie-secret="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" --cookie-secure=true \
  --request-logging=false --auth-logging=${O2P_LOG:-false} --standard-logging=${O2P_LOG:-false} \
  > "$d/stdout.log" 2>&1 &
pid=$!; pids+=("$pid")
wait_port oauth2-proxy "$pid" "$p_o2p" || fail oauth2-proxy "$d/stdout.log"

mkdir -p bench/out
"$work/fdbench" load -direct "http://127.0.0.1:$p_back" \
  -target "door=https://127.0.0.1:$p_door" \
  -target "nginx=https://127.0.0.1:$p_nginx" \
  -target "oauth2-proxy=https://127.0.0.1:$p_o2p" \
  $([[ $PROXY_ONLY == 1 ]] && echo -target "door-proxy-only=https://127.0.0.1:$p_ponly") \
  -ca "$work/cert.pem" -door-token "$work/door-token" \
  -conc "$CONC" -duration "${DURATION}s" -lat-n "$LAT_N" -ws-n "$WS_N" -rounds "$ROUNDS" -tests "$TESTS" \
  -md "$work/table.md" -json "$work/out.jsonl" > "$work/stdout" 2> "$work/stderr" || {
  cat "$work/stderr" >&2; tail -n 5 "$work"/*.log "$work"/*/stdout.log "$work/nginx/error.log" >&2 || true; exit 1
}
grep '^#' "$work/stderr" >&2 || true

{
  echo "# Front door benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Loopback only; $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r), $(go version | cut -d' ' -f3)."
  echo "clawhold $(git describe --always --dirty 2>/dev/null || echo '?'); $(nginx -v 2>&1 | sed 's/^nginx version: //') (Debian $(dpkg-query -W -f='${Version}' nginx-common 2>/dev/null || echo '?'), $(openssl version | cut -d' ' -f1-2)); oauth2-proxy $OAUTH2_PROXY_VERSION (go install, $(go version "$o2p" | cut -d' ' -f2))."
  echo "CONC=$CONC DURATION=${DURATION}s LAT_N=$LAT_N WS_N=$WS_N ROUNDS=$ROUNDS (medians over rounds; added = median(target) − median(direct))."
  echo "Clients: HTTP/1.1 keep-alive, one request in flight per connection; TLS 1.3 to the proxies, plain HTTP direct."
  [[ $PROXY_ONLY == 1 ]] && echo "door-proxy-only (diagnostic, authenticates nothing): the door's TLS, headers and proxy with a fixed identity, no session lookup."
  echo
  cat "$work/table.md"
} > bench/out/frontdoor.md
cp "$work/out.jsonl" bench/out/frontdoor.jsonl
cat bench/out/frontdoor.md

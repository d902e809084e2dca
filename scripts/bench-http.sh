#!/usr/bin/env bash
# HTTP benchmark of a release `tamma serve` against nginx, with wrk (keep-alive). Never run by CI:
# it needs the whole machine for about a minute. Run it once, on an otherwise idle machine.
#
#   scripts/bench-http.sh            # builds tamma in release, installs nginx and wrk if missing
#
# What it measures, each with `wrk -t1 -c64 -d10s` against 127.0.0.1:
#   - nginx returning a static 200 (the ceiling on this machine),
#   - GET /health/live, GET /health (served from the checker's cache),
#   - POST /v1/events with one event per request for 5 s (SQLite, the default store) — which also
#     fills the metric catalogue — then GET /metrics, with its number of exposition lines.
# The node runs with its production middleware (request ids, HTTP metrics, a tracing span per
# request) and logs at info to a file output, so stdout is not the bottleneck.
# nginx and /health/live alternate ROUNDS times (3) and their medians are compared.
# Environment: THREADS (1), CONNECTIONS (64), DURATION (10s), APPEND_DURATION (5s), ROUNDS (3),
# TAMMA_BIN (skip the build and use this binary).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10s}
APPEND_DURATION=${APPEND_DURATION:-5s}
ROUNDS=${ROUNDS:-3}

have() { command -v "$1" >/dev/null 2>&1; }
PATH="$PATH:/usr/sbin:/sbin"

if ! have wrk || ! have nginx; then
  echo "installing nginx and wrk (Debian packages)" >&2
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null
fi

if [ -n "${TAMMA_BIN:-}" ]; then
  bin=$TAMMA_BIN
else
  echo "building tamma (release)" >&2
  cargo build --release -q -p tamma
  bin=$PWD/target/release/tamma
fi

work=$(mktemp -d)
tamma_pid=""
nginx_pid=""
cleanup() {
  [ -n "$tamma_pid" ] && kill "$tamma_pid" 2>/dev/null && wait "$tamma_pid" 2>/dev/null
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() {
  for _ in $(seq 1 300); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "no answer on $1" >&2
  exit 1
}

# nginx: a static 200 on keep-alive connections, no access log.
nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!

# tamma: SQLite (the default store) in a temp data dir, info logs to a file.
tamma_port=$(free_port)
mkdir -p "$work/tamma"
cat >"$work/tamma/tamma.toml" <<EOF
dataDir = "$work/tamma/data"
[server]
listen = "127.0.0.1:$tamma_port"
[logging]
level = "info"
[[logging.outputs]]
type = "file"
config = { path = "logs/tamma.log" }
EOF
(cd "$work/tamma" && exec "$bin" serve >"$work/tamma/stdout.log" 2>&1) &
tamma_pid=$!

base=http://127.0.0.1:$tamma_port
wait_http "http://127.0.0.1:$nginx_port/"
wait_http "$base/health/live"
curl -fs -o /dev/null "$base/health" || true

cat >"$work/append.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"events":[{"type":"BENCH.APPENDED","tags":["bench:http","shard:1"],"data":{"n":1,"note":"one event per request"}}]}'
EOF

# run NAME URL [DURATION] [SCRIPT] → "requests/s non-2xx"
run() {
  local url=$1 duration=$2 script=${3:-}
  local out
  if [ -n "$script" ]; then
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" -s "$script" "$url")
  else
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" "$url")
  fi
  echo "$out" >>"$work/wrk.log"
  local rps errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
  local socket
  socket=$(awk '/Socket errors:/ {print $0}' <<<"$out")
  [ -n "$socket" ] && echo "  $url: $socket" >&2
  echo "${rps:-0} ${errors:-0}"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "measuring (${THREADS} thread, ${CONNECTIONS} connections, ${DURATION} each) …" >&2
# nginx and /health/live alternate ROUNDS times and the medians are compared: this machine's speed
# drifts by tens of percent within a minute, which a single back-to-back pair does not show.
nginx_all=() live_all=() nginx_err=0 live_err=0
for _ in $(seq 1 "$ROUNDS"); do
  read -r r e < <(run "http://127.0.0.1:$nginx_port/" "$DURATION"); nginx_all+=("$r"); nginx_err=$((nginx_err + e))
  read -r r e < <(run "$base/health/live" "$DURATION"); live_all+=("$r"); live_err=$((live_err + e))
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
nginx_rps=$(median "${nginx_all[@]}")
live_rps=$(median "${live_all[@]}")
read -r health_rps health_err < <(run "$base/health" "$DURATION")
read -r append_rps append_err < <(run "$base/v1/events" "$APPEND_DURATION" "$work/append.lua")
lines=$(curl -fs "$base/metrics" | wc -l)
read -r metrics_rps metrics_err < <(run "$base/metrics" "$DURATION")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
head=$(curl -fs "$base/v1/events/head" || echo '?')

ratio() { awk -v a="$1" -v b="$nginx_rps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
int() { awk -v a="$1" 'BEGIN { printf "%.0f", a }'; }
goal() { awk -v a="$1" -v g="$2" 'BEGIN { print (a >= g ? "met" : "MISSED") }'; }

printf '\n'
printf '| target | requests/s | × nginx | non-2xx | note |\n'
printf '|---|---:|---:|---:|---|\n'
printf '| nginx, static 200 (median of %s) | %s | 1.00 | %s | the ceiling |\n' "$ROUNDS" "$(int "$nginx_rps")" "$nginx_err"
printf '| GET /health/live (median of %s) | %s | %s | %s | goal ≥ 0.80× nginx: %s |\n' "$ROUNDS" "$(int "$live_rps")" \
  "$(ratio "$live_rps")" "$live_err" \
  "$(goal "$(ratio "$live_rps")" 0.8)"
printf '| GET /health (cached) | %s | %s | %s | goal ≥ 60,000/s: %s |\n' "$(int "$health_rps")" \
  "$(ratio "$health_rps")" "$health_err" "$(goal "$health_rps" 60000)"
printf '| POST /v1/events, 1 event/request (%s) | %s | %s | %s | %s events/s appended (SQLite) |\n' \
  "$APPEND_DURATION" "$(int "$append_rps")" "$(ratio "$append_rps")" "$append_err" "$(int "$append_rps")"
printf '| GET /metrics | %s | %s | %s | %s exposition lines; goal ≥ 20,000/s: %s |\n' \
  "$(int "$metrics_rps")" "$(ratio "$metrics_rps")" "$metrics_err" "$lines" "$(goal "$metrics_rps" 20000)"
printf '\n'
printf 'wrk -t%s -c%s -d%s (keep-alive), 127.0.0.1, %s cores; load average before %s, after %s\n' \
  "$THREADS" "$CONNECTIONS" "$DURATION" "$(nproc)" "$load_before" "$load_after"
printf 'rounds (nginx, /health/live): '
for i in "${!nginx_all[@]}"; do printf '(%s, %s) ' "$(int "${nginx_all[$i]}")" "$(int "${live_all[$i]}")"; done
printf '\nstore head after the run: %s\n' "$head"

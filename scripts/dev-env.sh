#!/usr/bin/env bash
# Provides what `make run` and `make test` need, wherever they run:
#   dev-env.sh python     print a Python >= 3.11 interpreter (installing one on Debian/Ubuntu as root)
#   dev-env.sh services   make PostgreSQL, RabbitMQ and Redis answer on localhost:
#                         start local installations, else use Docker, else install the
#                         distribution's packages (Debian/Ubuntu as root), else say what is missing
#   dev-env.sh local      exit 0 when the services answer locally (starting installed ones)
#   dev-env.sh docker     exit 0 when a Docker engine answers
#   dev-env.sh node       make npm available for the console's scripts (installing Node.js
#                         on Debian/Ubuntu as root), else say what is missing
#   dev-env.sh browser    print the path of a Chromium for the browser tests, installing
#                         Debian's chromium as root; print nothing when there is none
#   dev-env.sh fonts      make a Unicode font (DejaVu Sans) available to the PDF reports,
#                         installing Debian's fonts-dejavu-core as root; else say what PDFs lose
set -euo pipefail

PG_PORT=5432 AMQP_PORT=5672 REDIS_PORT=6379 STREAM_PORT=5552
ROOT=$(cd "$(dirname "$0")/.." && pwd)
COMPOSE_FILE="$ROOT/deploy/compose.yaml"

say() { echo "dev-env: $*" >&2; }
die() { say "$*"; exit 1; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # name port seconds
  local deadline=$((SECONDS + $3))
  until listening "$2"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 1
  done
}

is_debian_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

apt_install() {
  say "installing with apt-get: $*"
  if [ ! -f /tmp/.ledgerflow-apt-updated ]; then
    apt-get update -qq >&2 && touch /tmp/.ledgerflow-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}

cmd_python() {
  find_python && return 0
  if is_debian_root; then
    apt_install python3 python3-venv python3-dev >&2
    find_python && return 0
  fi
  die "ledgerflow needs Python >= 3.11 with the venv module (Debian/Ubuntu: apt-get install python3 python3-venv)."
}

docker_ready() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

start_local() {  # start whatever is installed but not running
  if ! listening $PG_PORT && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    local version; version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
  fi
  if ! listening $REDIS_PORT && command -v redis-server >/dev/null; then
    say "starting Redis"
    local dir=/var/lib/redis; [ -w "$dir" ] || dir=$(mktemp -d)
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port $REDIS_PORT --save "" \
      --appendonly no --dir "$dir" >&2 || true
  fi
  if ! listening $AMQP_PORT && command -v rabbitmq-server >/dev/null; then
    say "starting RabbitMQ (this takes a few seconds)"
    rabbitmq-server -detached >&2 || true
  fi
  wait_port PostgreSQL $PG_PORT 30 || true
  wait_port Redis $REDIS_PORT 15 || true
  wait_port RabbitMQ $AMQP_PORT 90 || true
}

missing() {
  local out=()
  listening $PG_PORT || out+=("PostgreSQL (127.0.0.1:$PG_PORT)")
  listening $AMQP_PORT || out+=("RabbitMQ (127.0.0.1:$AMQP_PORT)")
  listening $REDIS_PORT || out+=("Redis/KeyDB (127.0.0.1:$REDIS_PORT)")
  printf '%s\n' "${out[@]+"${out[@]}"}"
}

ensure_role() {
  # The default LEDGERFLOW_DATABASE_URL logs in as ledgerflow/ledgerflow; create that role
  # on a local server we administer. Elsewhere, set LEDGERFLOW_DATABASE_URL instead.
  local sql="DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledgerflow') THEN
    CREATE ROLE ledgerflow LOGIN CREATEDB PASSWORD 'ledgerflow'; END IF; END \$\$;"
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 && command -v psql >/dev/null; then
    (cd /tmp && runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c "$sql" >&2) && return 0
  fi
  if command -v psql >/dev/null; then
    psql -q -h 127.0.0.1 -d postgres -v ON_ERROR_STOP=1 -c "$sql" >/dev/null 2>&1 && return 0
  fi
  return 0
}

ensure_plugins() {
  # RabbitMQ's stream plugin ships with it (3.9 on) and is off by default: the treasury
  # reads its trades from streams. The consistent-hash exchange, also shipped, routes
  # providers to their shards (LEDGERFLOW_SHARDS). Enabled on a local broker we administer.
  local wanted="rabbitmq_stream rabbitmq_consistent_hash_exchange" missing_plugins=""
  local enabled=""
  if command -v rabbitmq-plugins >/dev/null; then
    # Needs the broker's Erlang cookie (root, or the rabbitmq user); otherwise unknown.
    enabled=$(rabbitmq-plugins list -e -m 2>/dev/null | grep '^rabbitmq_' || true)
  fi
  if [ -n "$enabled" ]; then
    for plugin in $wanted; do
      echo "$enabled" | grep -qx "$plugin" || missing_plugins="$missing_plugins $plugin"
    done
  elif ! listening $STREAM_PORT; then
    missing_plugins=" rabbitmq_stream"
  fi
  if [ -n "$missing_plugins" ] && [ "$(id -u)" = 0 ] && command -v rabbitmq-plugins >/dev/null; then
    say "enabling RabbitMQ's plugins:$missing_plugins"
    # shellcheck disable=SC2086
    rabbitmq-plugins enable $missing_plugins >&2 || true
    wait_port "RabbitMQ streams" $STREAM_PORT 30 || true
    missing_plugins=""
  fi
  listening $STREAM_PORT || say "RabbitMQ streams (127.0.0.1:$STREAM_PORT) not reachable: rabbitmq-plugins enable rabbitmq_stream"
  [ -z "$missing_plugins" ] || say "RabbitMQ plugins off:$missing_plugins (rabbitmq-plugins enable$missing_plugins)"
  return 0
}

cmd_services() {
  if [ -n "${LEDGERFLOW_DATABASE_URL:-}" ] && [ -n "${LEDGERFLOW_AMQP_URL:-}" ] &&
     [ -n "${LEDGERFLOW_REDIS_URL:-}" ]; then
    say "using the services named by LEDGERFLOW_DATABASE_URL, LEDGERFLOW_AMQP_URL, LEDGERFLOW_REDIS_URL"
    return 0
  fi
  [ -z "$(missing)" ] || start_local
  if [ -n "$(missing)" ] && docker_ready; then
    say "starting postgres, keydb and rabbitmq with Docker Compose"
    docker compose -f "$COMPOSE_FILE" up -d --wait postgres keydb rabbitmq >&2
  fi
  if [ -n "$(missing)" ] && is_debian_root; then
    apt_install postgresql redis-server rabbitmq-server
    start_local
  fi
  local still; still=$(missing)
  if [ -n "$still" ]; then
    say "not reachable:"
    while IFS= read -r line; do say "  - $line"; done <<<"$still"
    die "start them (or install Docker, or run as root on Debian/Ubuntu so this script can install them), or point LEDGERFLOW_DATABASE_URL, LEDGERFLOW_AMQP_URL and LEDGERFLOW_REDIS_URL at running ones."
  fi
  ensure_role
  ensure_plugins
}

cmd_local() {  # exit 0 when the services answer locally, starting installed ones if needed
  [ -z "$(missing)" ] || start_local
  [ -z "$(missing)" ] && ensure_role && ensure_plugins
}

cmd_node() {
  command -v npm >/dev/null && return 0
  if is_debian_root; then
    apt_install nodejs npm
    command -v npm >/dev/null && return 0
  fi
  die "the console's scripts are built with npm: install Node.js 18 or newer with npm (Debian/Ubuntu: apt-get install nodejs npm)."
}

find_chromium() {
  local candidate
  for candidate in chromium chromium-browser google-chrome-stable google-chrome; do
    command -v "$candidate" >/dev/null && { command -v "$candidate"; return 0; }
  done
  return 1
}

cmd_browser() {
  find_chromium && return 0
  if is_debian_root; then
    apt_install chromium >&2 || say "could not install chromium; the browser tests will be skipped"
    find_chromium && return 0
  fi
  say "no Chromium here: the browser tests will be skipped (Debian/Ubuntu: apt-get install chromium)"
  return 0
}

cmd_fonts() {
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && return 0
  if is_debian_root; then
    apt_install fonts-dejavu-core || true
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && return 0
  fi
  say "no DejaVu Sans: PDF reports print only Latin-1 text (Debian/Ubuntu: apt-get install fonts-dejavu-core)"
  return 0
}

case "${1:-}" in
  python) cmd_python ;;
  services) cmd_services ;;
  local) cmd_local ;;
  docker) docker_ready ;;
  node) cmd_node ;;
  browser) cmd_browser ;;
  fonts) cmd_fonts ;;
  *) echo "usage: $0 python|services|local|docker|node|browser|fonts" >&2; exit 2 ;;
esac

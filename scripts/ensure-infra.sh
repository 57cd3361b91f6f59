#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ (with its management plugin) answer locally.
# Starts them when they are installed but stopped; installs them (Debian) when
# missing and we are root; otherwise says how to get them.
set -euo pipefail

PGHOST=${POSTGRES_HOST:-127.0.0.1}
PGPORT=${POSTGRES_PORT:-5432}
AMQP_HOST=${AMQP_HOST:-127.0.0.1}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_port() { for _ in $(seq 1 ${3:-60}); do port_open "$1" "$2" && return 0; sleep 1; done; return 1; }
local_host() { [[ "$1" == 127.0.0.1 || "$1" == localhost ]]; }
hint() {
  echo "!! $1 is not reachable at $2 and cannot be started here." >&2
  echo "   Start it yourself, or run everything in containers: docker compose up" >&2
  exit 1
}

if ! port_open "$PGHOST" "$PGPORT"; then
  local_host "$PGHOST" || hint PostgreSQL "$PGHOST:$PGPORT"
  if ! command -v pg_ctlcluster >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing PostgreSQL…"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  command -v pg_ctlcluster >/dev/null || hint PostgreSQL "$PGHOST:$PGPORT"
  echo "starting PostgreSQL…"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  wait_port "$PGHOST" "$PGPORT" 60 || hint PostgreSQL "$PGHOST:$PGPORT"
fi

if ! port_open "$AMQP_HOST" 5672; then
  local_host "$AMQP_HOST" || hint RabbitMQ "$AMQP_HOST:5672"
  if ! command -v rabbitmq-server >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing RabbitMQ…"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  command -v rabbitmq-server >/dev/null || hint RabbitMQ "$AMQP_HOST:5672"
  echo "starting RabbitMQ…"
  rabbitmq-server -detached
  wait_port "$AMQP_HOST" 5672 90 || hint RabbitMQ "$AMQP_HOST:5672"
fi

# Every service instance keeps a pool of up to 2 x max_workers + 4 connections,
# and the suite runs several instances at once: 100 (the default) is too few.
if local_host "$PGHOST" && command -v psql >/dev/null; then
  max_conn=$(psql -h "$PGHOST" -p "$PGPORT" -U "${POSTGRES_USER:-postgres}" -Atc "SHOW max_connections" 2>/dev/null || echo 0)
  if [ "${max_conn:-0}" -lt 300 ] && command -v pg_ctlcluster >/dev/null; then
    echo "raising PostgreSQL max_connections from $max_conn to 400 (restart)…"
    psql -h "$PGHOST" -p "$PGPORT" -U "${POSTGRES_USER:-postgres}" -qc "ALTER SYSTEM SET max_connections = 400"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main restart
    wait_port "$PGHOST" "$PGPORT" 60 || hint PostgreSQL "$PGHOST:$PGPORT"
  fi
fi

# The test suite's per-test virtual hosts are made through the management API.
if local_host "$AMQP_HOST" && ! port_open "$AMQP_HOST" 15672; then
  if command -v rabbitmq-plugins >/dev/null; then
    echo "enabling RabbitMQ's management plugin…"
    rabbitmq-plugins enable rabbitmq_management >/dev/null
    wait_port "$AMQP_HOST" 15672 60 || { echo "!! management plugin did not come up on :15672" >&2; exit 1; }
  fi
fi
# Headless Chromium, its driver and a CJK font for the dashboard's browser test
# (tests/e2e/test_dashboard_browser.py). Without them that test is SKIPPED.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
   || ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium, chromium-driver and a CJK font (dashboard browser test)…"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        chromium chromium-driver fonts-wqy-microhei >/dev/null; } \
      || echo "!!! could not install chromium/chromium-driver: the dashboard browser test WILL BE SKIPPED" >&2
  else
    echo "!!! chromium/chromium-driver missing and not root: the dashboard browser test WILL BE SKIPPED" >&2
  fi
fi
echo "PostgreSQL $PGHOST:$PGPORT and RabbitMQ $AMQP_HOST:5672 are up."

#!/usr/bin/env bash
# Stop the services started by scripts/run.sh: first their supervisors (so
# nothing is restarted), then the services themselves.
cd "$(dirname "$0")/.."
mkdir -p .run
touch .run/stopping
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 1
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
}
for pidfile in .run/*.pid; do
  [ -e "$pidfile" ] || continue
  case "$pidfile" in *.service.pid) continue ;; esac
  stop_pid "$(cat "$pidfile")" || true
  rm -f "$pidfile"
done
for pidfile in .run/*.service.pid; do
  [ -e "$pidfile" ] || continue
  stop_pid "$(cat "$pidfile")" && echo "stopped $(basename "$pidfile" .service.pid)"
  rm -f "$pidfile"
done

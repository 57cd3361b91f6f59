#!/usr/bin/env bash
# Start the three services (each with its relay) in the background, wait until
# they are healthy, load the demo university, and say where everything is.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run
export PSYCOPG_WAIT_FUNC=wait_select
# Development mode: services without AUTH_SECRET, event keys or cipher keys use
# public development values (each logs a warning). Never for real records.
export LIANCHUANG_DEV_MODE=1
export WEBHOOK_SECRET="${WEBHOOK_SECRET:-lianchuang-development-only-webhook-secret}"
echo "make run: LIANCHUANG_DEV_MODE=1 (public development secrets; not for real records)" >&2
declare -A PORTS=([organizations]=8001 [evaluation]=8002 [notifications]=8003)
declare -A CLASSES=([organizations]=OrganizationsService [evaluation]=EvaluationService [notifications]=NotificationsService)

scripts/stop.sh >/dev/null 2>&1 || true
rm -f .run/stopping

# A supervisor per service, as a process manager would be in production: a
# service that exits (a crash, a fatal broker error) is started again after a
# second, and the restart is written to its log. scripts/stop.sh ends both.
supervise() {
  local svc=$1
  while [ ! -e .run/stopping ]; do
    .venv/bin/nameko run --config "services/$svc/config.yaml" "services.$svc.service:${CLASSES[$svc]}" \
      >>".run/$svc.log" 2>&1 &
    echo $! >".run/$svc.service.pid"
    wait $! && status=0 || status=$?
    [ -e .run/stopping ] && break
    echo "$(date -Is) supervisor: $svc exited with status $status; restarting in 1 s" >>".run/$svc.log"
    sleep 1
  done
}

# Each service's database, its own role and the append-only, chained store
# (as POSTGRES_USER, the administrator; the services then connect as their roles).
.venv/bin/lianchuang db setup
for svc in organizations evaluation notifications; do
  : >".run/$svc.log"
  supervise "$svc" &
  echo $! >".run/$svc.pid"
done
# The HTTP gateway: JSON API, OpenAPI document and the 组织部 dashboard.
CLASSES[gateway]=GatewayService
: >".run/gateway.log"
supervise gateway &
echo $! >".run/gateway.pid"
urls=()
for svc in organizations evaluation notifications; do urls+=("http://127.0.0.1:${PORTS[$svc]}/health"); done
urls+=("http://127.0.0.1:8000/health")
if ! .venv/bin/lianchuang wait-healthy --timeout 90 "${urls[@]}"; then
  echo "a service did not become healthy; see .run/*.log" >&2
  tail -n 30 .run/*.log >&2
  exit 1
fi
.venv/bin/lianchuang demo
cat <<MSG

Lianchuang is running (logs in .run/, stop with 'make stop'):
  organizations  health http://127.0.0.1:8001/health   metrics http://127.0.0.1:8001/metrics
  evaluation     health http://127.0.0.1:8002/health   metrics http://127.0.0.1:8002/metrics
  notifications  health http://127.0.0.1:8003/health   metrics http://127.0.0.1:8003/metrics
  gateway        http://127.0.0.1:8000  (JSON API /api/v1/<service>/<method>, OpenAPI
                 http://127.0.0.1:8000/api/v1/openapi.json, 组织部 dashboard
                 http://127.0.0.1:8000/dashboard)
  RabbitMQ management http://127.0.0.1:15672 (guest/guest)

Mint a token:   .venv/bin/lianchuang token --role org_admin --sub alice
Call over HTTP: curl -s -X POST http://127.0.0.1:8000/api/v1/organizations/double_leader_coverage \
                  -H "Authorization: Bearer \$(.venv/bin/lianchuang token --role org_admin --sub alice)" -d '{}'
MSG

#!/usr/bin/env bash
# Validate deploy/ (make check-deploy, run by .ci/run): the Kubernetes manifests,
# Prometheus' config, rules and rule tests, the Grafana dashboard and alert
# rules against the metrics the services really export, and docker compose's
# file. A check that cannot run here says so loudly instead of passing quietly.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PSYCOPG_WAIT_FUNC=wait_select

echo "== Kubernetes manifests (kubernetes-validate --strict)"
"$VENV/bin/kubernetes-validate" --strict --quiet deploy/k8s/*.yaml
echo "   ok: $(grep -c '^kind:' deploy/k8s/*.yaml) resources"

echo "== Prometheus config and rules (promtool)"
PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ] && [ -x .run/promtool/usr/bin/promtool ]; then
  PROMTOOL=.run/promtool/usr/bin/promtool
fi
if [ -z "$PROMTOOL" ] && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  # Only promtool is wanted: unpack Debian's package rather than install (and start) a server.
  tmp=$(mktemp -d)
  if (cd "$tmp" && { apt-get download -qq prometheus >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get download -qq prometheus >/dev/null 2>&1; }; }); then
    mkdir -p .run/promtool && dpkg-deb -x "$tmp"/prometheus_*.deb .run/promtool
    PROMTOOL=.run/promtool/usr/bin/promtool
  fi
  rm -rf "$tmp"
fi
if [ -n "$PROMTOOL" ]; then
  tmp=$(mktemp -d)
  sed "s#/etc/prometheus/alerts.yml#$PWD/deploy/prometheus/alerts.yml#" \
    deploy/prometheus/prometheus.yml >"$tmp/prometheus.yml"
  "$PROMTOOL" check config "$tmp/prometheus.yml"
  rm -rf "$tmp"
  "$PROMTOOL" check rules deploy/prometheus/alerts.yml
  "$PROMTOOL" test rules deploy/prometheus/alerts_test.yml deploy/prometheus/alerts_business_test.yml
else
  echo "!!! promtool could not be found or unpacked: Prometheus files get a structural check only" >&2
  "$VENV/bin/python" - <<'PY'
import yaml
config = yaml.safe_load(open("deploy/prometheus/prometheus.yml"))
assert config["scrape_configs"] and all(j["job_name"] for j in config["scrape_configs"])
names = set()
for group in yaml.safe_load(open("deploy/prometheus/alerts.yml"))["groups"]:
    for rule in group["rules"]:
        assert ("alert" in rule) != ("record" in rule) and rule["expr"].strip(), rule
        assert rule.get("alert") not in names, rule
        names.add(rule.get("alert"))
print("   structure ok")
PY
fi

echo "== Grafana dashboard and alert rules against the exported metrics"
"$VENV/bin/pytest" -q --timeout 300 -p no:cacheprovider tests/interface/test_deploy_metrics.py

echo "== docker compose config"
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # Debian's docker-compose (1.29) reads the Compose Specification: enough to validate.
  (apt-get install -y -qq docker-compose >/dev/null 2>&1 \
   || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null 2>&1; }) || true
fi
if docker compose version >/dev/null 2>&1; then
  docker compose config --quiet && echo "   ok"
elif command -v docker-compose >/dev/null; then
  docker-compose config --quiet && echo "   ok"
else
  echo "!!! SKIPPED: docker compose is not available here; docker-compose.yml was NOT validated" >&2
fi

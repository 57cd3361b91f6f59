"""deploy/ against what the services really export: every metric a Grafana
panel or an alert rule names is on some service's /metrics (run by make
check-deploy, and by make test)."""
import json
import re
from pathlib import Path

import requests
import yaml

from tests.conftest import SERVICES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\b(lianchuang_[a-z0-9_]+)")
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def exported(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def known(name: str, names: set[str]) -> bool:
    if name in names:
        return True
    return any(name.endswith(s) and name[: -len(s)] in names for s in SUFFIXES)


def referenced() -> dict[str, set[str]]:
    """Metric names by where they are used (panel title or alert name)."""
    uses: dict[str, set[str]] = {}
    dashboard = json.loads((DEPLOY / "grafana/dashboards/lianchuang.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in METRIC.findall(target["expr"]):
                uses.setdefault(name, set()).add(f"panel {panel['title']!r}")
    for group in yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            for name in METRIC.findall(rule["expr"]):
                uses.setdefault(name, set()).add(f"rule {rule.get('alert') or rule['record']}")
    return uses


def test_every_panel_and_alert_names_an_exported_metric(start_service, start_gateway):
    urls = [f"http://{start_service(name).config['WEB_SERVER_ADDRESS']}/metrics"
            for name in SERVICES]
    urls.append(f"{start_gateway()}/metrics")
    names = set()
    for url in urls:
        response = requests.get(url, timeout=30)
        assert response.status_code == 200, url
        names |= exported(response.text)
    uses = referenced()
    assert len(uses) > 15
    missing = {name: sorted(where) for name, where in uses.items() if not known(name, names)}
    assert not missing, f"metrics named in deploy/ that no service exports: {missing}"
    # and the check can fail: a name nobody exports is caught
    assert not known("lianchuang_no_such_metric_total", names)

"""deploy/prometheus: the alert rules pass promtool's checks and unit tests (each alert
fires on a failing run's series and stays silent on a healthy one), and every series
they use is one surveyproc's exporter really serves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from surveyproc.ops.metrics import METRICS
from tests.support.servers import require_program

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    require_program("promtool (apt-get install prometheus)", shutil.which("promtool") is not None)
    return subprocess.run(["promtool", *args], cwd=RULES, capture_output=True, text=True,
                          timeout=60)


def test_rules_pass_promtool_check_and_unit_tests():
    check = _promtool("check", "rules", "surveyproc-rules.yaml")
    assert check.returncode == 0 and "SUCCESS: 6 rules found" in check.stdout, check.stdout
    tested = _promtool("test", "rules", "surveyproc-rules.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # every alert has a unit test
    rules = yaml.safe_load((RULES / "surveyproc-rules.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((RULES / "surveyproc-rules.test.yaml").read_text())
    covered = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    assert alerts == covered


def served_series() -> set[str]:
    """Every series name surveyproc exports, from its one table of metric definitions."""
    names: set[str] = set()
    for name, definition in METRICS.items():
        if definition.kind == "counter":
            names.add(f"{name}_total")
        elif definition.kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def test_rules_use_only_series_surveyproc_exports():
    served = served_series()
    rules = yaml.safe_load((RULES / "surveyproc-rules.yaml").read_text())
    used = {name for group in rules["groups"] for rule in group["rules"]
            for name in re.findall(r"surveyproc_[a-z_]+", rule["expr"])}
    assert used and used <= served, used - served

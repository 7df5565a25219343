"""The canary's analysis queries, run by promtool on made-up series of a canary and a stable release.

Argo Rollouts only sends each query to Prometheus and compares ``result[0]`` with the metric's
conditions; here every query (its arguments filled in as a Rollout fills them) becomes a
recording rule, and ``promtool test rules`` evaluates it over scrapes of two pod template
hashes: a healthy canary must pass every condition, a regressed one must fail the metric that
measures its regression.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_service
from tests.deploy.manifests import BASE_DIR

TEMPLATE = BASE_DIR / "deploy" / "k8s" / "base" / "analysistemplate.yaml"
SERVICE = "partner-ingest"
CANARY, STABLE = "canary7f", "stable5c"
WEBHOOK = "/api/v1/webhooks/<slug:carrier_slug>"
BATCH = "/api/v1/telemetry/batch"


def template() -> dict[str, Any]:
    return yaml.safe_load(TEMPLATE.read_text())


def arguments() -> dict[str, str]:
    given = {"service": SERVICE, "canary-hash": CANARY, "stable-hash": STABLE}
    return {a["name"]: given.get(a["name"], a.get("value", "")) for a in template()["spec"]["args"]}


def filled(text: str) -> str:
    args = arguments()
    return re.sub(r"\{\{\s*args\.([a-z0-9-]+)\s*\}\}", lambda m: args[m.group(1)], text)


def rule_name(metric: str) -> str:
    return "analysis:" + metric.replace("-", "_")


def series(
    hash_: str, *, requests: int, errors: int, fast: int, slow: int, ingested: int, rejected: int
) -> list[dict[str, str]]:
    """One minute's increments of every series the queries read, for one pod template hash, over 20 minutes."""
    pod = f'component="{SERVICE}", rollouts_pod_template_hash="{hash_}"'
    out: list[dict[str, str]] = []
    for endpoint in (WEBHOOK, BATCH):
        labels = f'{pod}, endpoint="{endpoint}", method="POST"'
        out += [
            {"series": f'tms_http_requests_total{{{labels}, status="2xx"}}', "values": f"0+{requests - errors}x20"},
            {"series": f'tms_http_requests_total{{{labels}, status="5xx"}}', "values": f"0+{errors}x20"},
            {"series": f'tms_http_request_errors_total{{{pod}, endpoint="{endpoint}"}}', "values": f"0+{errors}x20"},
            # Answers within 50 ms ("fast") or between 1 s and 2.5 s ("slow").
            {"series": f'tms_http_request_duration_seconds_bucket{{{labels}, le="0.05"}}', "values": f"0+{fast}x20"},
            {"series": f'tms_http_request_duration_seconds_bucket{{{labels}, le="1.0"}}', "values": f"0+{fast}x20"},
            {
                "series": f'tms_http_request_duration_seconds_bucket{{{labels}, le="2.5"}}',
                "values": f"0+{fast + slow}x20",
            },
            {
                "series": f'tms_http_request_duration_seconds_bucket{{{labels}, le="+Inf"}}',
                "values": f"0+{fast + slow}x20",
            },
        ]
    out += [
        {"series": f"tms_telemetry_events_ingested_total{{{pod}}}", "values": f"0+{ingested}x20"},
        {"series": f'tms_telemetry_events_rejected_total{{{pod}, source="webhook"}}', "values": f"0+{rejected}x20"},
    ]
    return out


HEALTHY = {"requests": 600, "errors": 0, "fast": 600, "slow": 0, "ingested": 990, "rejected": 10}
# What each regression does to the canary, and the analysis metric that must fail on it.
REGRESSIONS = {
    "api-5xx-ratio": {**HEALTHY, "errors": 30},  # 5 % of the answers
    "api-latency-p99": {**HEALTHY, "fast": 300, "slow": 300},  # half the answers take 1 - 2.5 s
    "ingest-ack-p99": {**HEALTHY, "fast": 300, "slow": 300},
    "telemetry-reject-ratio": {**HEALTHY, "ingested": 900, "rejected": 100},  # 10 % refused, stable 1 %
}


def condition_holds(condition: str, value: float) -> bool:
    match = re.fullmatch(r"result\[0\]\s*(<=|>=|<|>)\s*([0-9.]+)", filled(condition).strip())
    assert match, condition
    op, bound = match.group(1), float(match.group(2))
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound}[op]


def evaluate(tmp_path: Path, canary: dict[str, int]) -> dict[str, float]:
    """Every analysis query's value at minute 15, by promtool, for this canary next to a healthy stable."""
    metrics = template()["spec"]["metrics"]
    rules = {
        "groups": [
            {
                "name": "analysis",
                "rules": [
                    {"record": rule_name(m["name"]), "expr": filled(m["provider"]["prometheus"]["query"])}
                    for m in metrics
                ],
            }
        ]
    }
    (tmp_path / "analysis.rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    values: dict[str, float] = {}
    for metric in metrics:
        # promtool prints the value it got when the expected one differs: expect an impossible one, read it.
        test = {
            "rule_files": ["analysis.rules.yaml"],
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": series(CANARY, **canary) + series(STABLE, **HEALTHY),
                    "promql_expr_test": [
                        {"expr": rule_name(metric["name"]), "eval_time": "15m", "exp_samples": [{"value": -12345}]}
                    ],
                }
            ],
        }
        path = tmp_path / f"{metric['name']}.test.yaml"
        path.write_text(yaml.safe_dump(test, sort_keys=False))
        result = subprocess.run(
            ["promtool", "test", "rules", path.name], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        output = result.stdout + result.stderr
        got = re.search(r"got: \{[^}]*\} (\S+)", output)
        assert got, f"promtool did not evaluate {metric['name']}:\n{output}"
        values[metric["name"]] = float(got.group(1))
    return values


@pytest.fixture
def promtool() -> None:
    require_service("promtool", shutil.which("promtool") is not None)


def test_every_query_is_valid_promql(promtool: None, tmp_path: Path) -> None:
    metrics = template()["spec"]["metrics"]
    rules = {
        "groups": [
            {
                "name": "analysis",
                "rules": [
                    {"record": rule_name(m["name"]), "expr": filled(m["provider"]["prometheus"]["query"])}
                    for m in metrics
                ],
            }
        ]
    }
    path = tmp_path / "analysis.rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 rules found" in result.stdout


def test_a_healthy_canary_passes_every_metric(promtool: None, tmp_path: Path) -> None:
    values = evaluate(tmp_path, HEALTHY)
    for metric in template()["spec"]["metrics"]:
        value = values[metric["name"]]
        assert condition_holds(metric["successCondition"], value), (metric["name"], value)
        assert not condition_holds(metric["failureCondition"], value), (metric["name"], value)


@pytest.mark.parametrize("regressed", sorted(REGRESSIONS))
def test_a_regressed_canary_fails_the_metric_that_measures_it(promtool: None, tmp_path: Path, regressed: str) -> None:
    values = evaluate(tmp_path, REGRESSIONS[regressed])
    metric = next(m for m in template()["spec"]["metrics"] if m["name"] == regressed)
    value = values[regressed]
    assert condition_holds(metric["failureCondition"], value), (regressed, value)
    assert not condition_holds(metric["successCondition"], value), (regressed, value)

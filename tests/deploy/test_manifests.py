"""The Kubernetes manifests (deploy/k8s) as rendered by ``kubectl kustomize``: configuration, probes,
limits, security, the single beat, autoscaling, budgets, network policies, the mTLS edge, the canary."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_service
from tests.deploy.manifests import (
    BASE_DIR,
    OVERLAYS,
    exported_metric_names,
    kubectl,
    one,
    pod_specs,
    render,
    settings_variables,
)

# Variables that hold credentials: only ever in a Secret, never in the ConfigMap.
SECRET_VARIABLES = {
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "RATELIMIT_REDIS_URL",
    "NATS_URL",
    "MQTT_URL",
    "MQTT_USERNAME",
    "MQTT_PASSWORD",
    "METRICS_TOKEN",
    "PAGERDUTY_ROUTING_KEY",
}
SERVERS = {"tms-web": "/readyz", "tms-partner-ingest": "/readyz"}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    require_service("kubectl", kubectl() is not None)
    return request.param, render(f"overlays/{request.param}")


def _secret_keys(objects: list[dict[str, Any]], name: str) -> set[str]:
    """Keys of Secret ``name``: a plain Secret (staging) or the ExternalSecret that writes it (production)."""
    keys: set[str] = set()
    for obj in objects:
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == name:
            keys |= set(obj.get("stringData", {})) | set(obj.get("data", {}))
        if obj["kind"] == "ExternalSecret" and obj["spec"]["target"]["name"] == name:
            keys |= {item["secretKey"] for item in obj["spec"].get("data", [])}
    return keys


def _env_of(objects: list[dict[str, Any]], container: dict[str, Any]) -> set[str]:
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = one(objects, "ConfigMap", source["configMapRef"]["name"])
            names |= set(config["data"])
        if "secretRef" in source:
            keys = _secret_keys(objects, source["secretRef"]["name"])
            assert keys, f"{container['name']} reads Secret {source['secretRef']['name']}, which nothing provides"
            names |= keys
    return names


def test_the_settings_parser_finds_the_variables() -> None:
    names = settings_variables()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "TMS_VAR_DIR", "PARTNER_CLIENT_CERT_HEADER"} <= names
    assert len(names) > 90


def test_every_setting_reaches_every_process(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    wanted = settings_variables()
    workloads = pod_specs(objects)
    assert len(workloads) == 8  # web, partner-ingest, worker, beat, mqtt-bridge, events-relay, migrate, rotation
    for obj, pod in workloads:
        for container in pod["containers"]:
            missing = sorted(wanted - _env_of(objects, container))
            assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {', '.join(missing)}"


def test_credentials_are_never_in_the_config_map(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("tms-config"))
    assert not SECRET_VARIABLES & set(config["data"])
    assert _secret_keys(objects, "tms-secrets") >= SECRET_VARIABLES
    assert config["data"]["DEBUG"] == "0"


def test_staging_secrets_hold_placeholders_only() -> None:
    require_service("kubectl", kubectl() is not None)
    secrets = [o for o in render("overlays/staging") if o["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} >= {"tms-secrets", "tms-evidence-key", "tms-carrier-ca"}
    for secret in secrets:
        assert "data" not in secret
        for key, value in secret["stringData"].items():
            assert "REPLACE-ME" in value, f"{secret['metadata']['name']}.{key} is not a placeholder"
    assert not [o for o in render("overlays/production") if o["kind"] == "Secret"]


def test_every_container_has_limits_and_a_locked_down_security_context(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    for obj, pod in pod_specs(objects):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        pod_security = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, where
        for container in pod.get("initContainers", []) + pod["containers"]:
            resources = container.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{where}: {section}"
            security = container.get("securityContext", {})
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert "add" not in security.get("capabilities", {}), where
            seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where
            # The root filesystem is read-only: the settings' VAR_DIR must be a volume.
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert {"/var/lib/tms", "/tmp"} <= mounts, where  # nosec B108


def test_servers_have_liveness_and_readiness_probes(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    served = 0
    for obj, pod in pod_specs(objects):
        for container in pod["containers"]:
            if not container.get("ports"):
                continue
            served += 1
            where = obj["metadata"]["name"]
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["readinessProbe"]["httpGet"]["path"] == SERVERS[where], where
            # The kubelet asks by pod address: the Host it sends must be allowed.
            host = {h["name"]: h["value"] for h in container["readinessProbe"]["httpGet"]["httpHeaders"]}["Host"]
            config = next(o for o in objects if o["kind"] == "ConfigMap")
            assert host in config["data"]["ALLOWED_HOSTS"].split(","), where
    assert served == len(SERVERS)


def test_one_image_for_every_process(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    images = {c["image"] for _, pod in pod_specs(objects) for c in pod["containers"]}
    assert len(images) == 1 and next(iter(images)).startswith("registry.example.com/tms/console:")


def test_beat_is_exactly_one(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    beat = one(objects, "Deployment", "tms-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [h for h in objects if h["kind"] == "HorizontalPodAutoscaler" and "beat" in h["metadata"]["name"]]
    assert "beat" in beat["spec"]["template"]["spec"]["containers"][0]["command"]
    bridge = one(objects, "Deployment", "tms-mqtt-bridge")
    assert bridge["spec"]["replicas"] == 1 and bridge["spec"]["strategy"]["type"] == "Recreate"


def test_autoscalers_and_disruption_budgets(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    for name, kind in (("tms-web", "Rollout"), ("tms-partner-ingest", "Rollout"), ("tms-worker", "Deployment")):
        hpa = one(objects, "HorizontalPodAutoscaler", name)
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == (kind, name)
        workload = one(objects, kind, name)
        assert hpa["spec"]["minReplicas"] >= 2
        labels = workload["spec"]["template"]["metadata"]["labels"]
        pdb = one(objects, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["spec"].get("minAvailable", 0) >= 1


def test_network_policies_deny_by_default_and_open_only_the_needed_flows(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny) == 1

    def egress_ports(component: str) -> set[int]:
        ports: set[int] = set()
        for policy in policies:
            selector = policy["spec"]["podSelector"]
            selected = selector == {} or component in selector.get("matchExpressions", [{}])[0].get("values", [])
            selected = selected or selector.get("matchLabels", {}).get("app.kubernetes.io/component") == component
            if selected:
                for rule in policy["spec"].get("egress", []):
                    ports |= {p["port"] for p in rule.get("ports", [])}
        return ports

    assert {53, 5432, 6379, 4317} <= egress_ports("beat") and 443 not in egress_ports("beat")
    assert {1883, 8883} <= egress_ports("mqtt-bridge") and 4222 not in egress_ports("mqtt-bridge")
    assert 4222 in egress_ports("events-relay") and 6379 not in egress_ports("events-relay")
    assert 443 in egress_ports("worker") and egress_ports("migrate") == {53, 5432, 4317, 4318}
    ingress = {
        p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in policies
        if p["spec"].get("ingress")
    }
    assert ingress == {"web", "partner-ingest"}  # nothing else accepts a connection


def test_service_accounts_have_no_token(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    for obj, pod in pod_specs(objects):
        assert pod["serviceAccountName"] in accounts, obj["metadata"]["name"]
    assert all(a.get("automountServiceAccountToken") is False for a in accounts.values())


def test_migrations_run_before_the_rollout(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    job = one(objects, "Job", "tms-migrate")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == ["migrate", "--noinput"]


def test_rotation_cronjob_calls_the_rotation_command(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    cron = one(objects, "CronJob", "tms-webhook-secret-rotation")
    command = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "manage.py", "webhook_secrets_rotate"]
    assert (BASE_DIR / "missions" / "management" / "commands" / f"{command[2]}.py").is_file()
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["suspend"] is (name == "production")


def test_partner_edge_verifies_and_forwards_the_client_certificate(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    ingress = one(objects, "Ingress", "tms-partner")
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    namespace, _, secret = notes[prefix + "auth-tls-secret"].partition("/")
    assert namespace == ingress["metadata"]["namespace"] and secret == "tms-carrier-ca"
    assert notes[prefix + "auth-tls-verify-client"] == "optional"  # as deploy/nginx/partner-api.conf
    assert notes[prefix + "auth-tls-pass-certificate-to-upstream"] == "true"
    # ingress-nginx sends the certificate in "ssl-client-cert" and the result in "ssl-client-verify";
    # WSGI/ASGI name them HTTP_SSL_CLIENT_CERT / HTTP_SSL_CLIENT_VERIFY, as the app must read them.
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    assert config["PARTNER_CLIENT_CERT_HEADER"] == "HTTP_SSL_CLIENT_CERT"
    assert config["PARTNER_CLIENT_VERIFY_HEADER"] == "HTTP_SSL_CLIENT_VERIFY"
    assert config["PARTNER_TRUSTED_PROXIES"]
    # API_MAX_BODY_BYTES (1 MiB) is the edge's body limit too.
    assert notes[prefix + "proxy-body-size"] == "1m" and config["API_MAX_BODY_BYTES"] == str(1024 * 1024)
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == {"/api/v1/", "/oauth2/", "/.well-known/oauth-authorization-server"}
    host = ingress["spec"]["rules"][0]["host"]
    assert config["OAUTH2_ISSUER"] == f"https://{host}"
    certificate = one(objects, "Certificate", "tms-partner")
    assert certificate["spec"]["dnsNames"] == [host]
    assert certificate["spec"]["secretName"] == ingress["spec"]["tls"][0]["secretName"]


def test_canary_steps_and_analysis(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    template = one(objects, "AnalysisTemplate", "tms-canary-slis")
    for name in ("tms-web", "tms-partner-ingest"):
        canary = one(objects, "Rollout", name)["spec"]["strategy"]["canary"]
        steps = canary["steps"]
        assert [s["setWeight"] for s in steps if "setWeight" in s] == [10, 50, 100]
        for index, step in enumerate(steps):
            if "setWeight" in step:
                assert "pause" in steps[index + 1], f"{name}: no pause after {step}"
        assert canary["analysis"]["templates"] == [{"templateName": template["metadata"]["name"]}]
        given = {a["name"] for a in canary["analysis"]["args"]}
        required = {a["name"] for a in template["spec"]["args"] if "value" not in a}
        assert required <= given
        one(objects, "Service", canary["canaryService"])
        one(objects, "Ingress", canary["trafficRouting"]["nginx"]["stableIngress"])


def test_analysis_queries_only_metrics_the_app_exports() -> None:
    require_service("kubectl", kubectl() is not None)
    template = one(render("base"), "AnalysisTemplate", "tms-canary-slis")
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert set(metrics) == {"api-5xx-ratio", "api-latency-p99", "telemetry-reject-ratio", "ingest-ack-p99"}
    exported = exported_metric_names()
    for name, metric in metrics.items():
        query = metric["provider"]["prometheus"]["query"]
        used = set(re.findall(r"\b(tms_[a-z0-9_]+?)(?:_total|_bucket|_count|_sum)?\{", query))
        assert used, name
        assert used <= exported, f"{name} queries {used - exported}, which the app does not export"
        assert "failureCondition" in metric and metric["failureLimit"] >= 0


def test_argocd_staging_syncs_itself_and_production_waits_for_an_operator() -> None:
    apps = BASE_DIR / "deploy" / "argocd"
    staging = yaml.safe_load((apps / "apps" / "staging.yaml").read_text())
    production = yaml.safe_load((apps / "apps" / "production.yaml").read_text())
    root = yaml.safe_load((apps / "root.yaml").read_text())
    assert staging["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert "automated" not in production["spec"].get("syncPolicy", {})
    assert staging["spec"]["source"]["path"] == "deploy/k8s/overlays/staging"
    assert production["spec"]["source"]["path"] == "deploy/k8s/overlays/production"
    assert root["spec"]["source"]["path"] == "deploy/argocd/apps"
    for app in (staging, production):
        assert (BASE_DIR / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()


# --- scripts/deploy_check.sh ----------------------------------------------------------------

DEPLOY_VENV = BASE_DIR / ".venv-deploy"


def _deploy_check(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEPLOY_VENV": str(DEPLOY_VENV)}
    return subprocess.run(
        ["bash", str(root / "scripts" / "deploy_check.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


def _need_validators() -> None:
    if not (DEPLOY_VENV / "bin" / "kubernetes-validate").exists():
        pytest.skip("no .venv-deploy (make install-deploy)")
    require_service("kubectl", kubectl() is not None)


def test_deploy_check_passes() -> None:
    _need_validators()
    result = _deploy_check(BASE_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploy check: OK" in result.stdout


def test_deploy_check_fails_on_an_invalid_field(tmp_path: Path) -> None:
    _need_validators()
    (tmp_path / "scripts").mkdir()
    shutil.copy(BASE_DIR / "scripts" / "deploy_check.sh", tmp_path / "scripts")
    shutil.copytree(BASE_DIR / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("terraform"))
    beat = tmp_path / "deploy" / "k8s" / "base" / "beat.yaml"
    beat.write_text(beat.read_text().replace("revisionHistoryLimit: 5", "revisionHistoryLimit: 5\n  replica: 1"))
    rollout = tmp_path / "deploy" / "k8s" / "base" / "web.yaml"
    rollout.write_text(rollout.read_text().replace("- pause: {duration: 10m}", "- pauze: {duration: 10m}", 1))
    result = _deploy_check(tmp_path)
    assert result.returncode != 0
    assert "'replica' was unexpected" in result.stdout + result.stderr
    assert "'pauze' was unexpected" in result.stdout + result.stderr

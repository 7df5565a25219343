"""`make run` serves the partner API and webhooks from gunicorn on PARTNER_PORT, the console from daphne on PORT.

The supervisor is started as `scripts/run_all.py` starts it, with the real
partner server (gunicorn, ``tms_console.wsgi``, built by ``run_all.partner_spec``)
and a stand-in for daphne, and a real request goes to the partner server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port

BASE_DIR = Path(__file__).resolve().parents[2]


def _run_all() -> Any:
    sys.path.insert(0, str(BASE_DIR / "scripts"))
    try:
        import run_all
    finally:
        sys.path.remove(str(BASE_DIR / "scripts"))
    return run_all


def test_the_partner_server_is_gunicorn_on_its_own_port(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    run_all = _run_all()
    settings.WEB_DRAIN_SECONDS = 7.0
    monkeypatch.delenv("PARTNER_BASE_URL", raising=False)
    run_all.partner_base_url_default("127.0.0.1", 8123)
    assert os.environ["PARTNER_BASE_URL"] == "http://127.0.0.1:8123"
    everything = {"run_carrier_sim", "simulate_fleet"}
    specs = {
        s.name: s for s in run_all.build_specs(host="127.0.0.1", port=8000, commands=everything, partner_port=8123)
    }
    assert list(specs) == ["web", "partner", "worker", "beat", "carriers", "fleet"]
    partner = specs["partner"]
    assert Path(partner.argv[0]).name == "gunicorn"
    assert partner.argv[-1] == "tms_console.wsgi:application"
    joined = " ".join(partner.argv)
    assert "--bind 127.0.0.1:8123" in joined
    assert "--worker-class tms_console.gunicorn_worker.ProblemThreadWorker" in joined
    assert "--graceful-timeout 7" in joined and partner.drain_seconds == 7.0
    # The fleet simulator posts its telemetry to the partner server, not to daphne.
    assert specs["fleet"].argv[-2:] == ["--console-url", "http://127.0.0.1:8123"]
    assert specs["web"].argv[-1] == "tms_console.asgi:application"
    # PARTNER_PORT=0: no partner server, and an operator's own PARTNER_BASE_URL is kept.
    assert "partner" not in {s.name for s in run_all.build_specs(host="127.0.0.1", port=8000, commands=set())}
    monkeypatch.setenv("PARTNER_BASE_URL", "https://partners.example")
    run_all.partner_base_url_default("127.0.0.1", 8123)
    assert os.environ["PARTNER_BASE_URL"] == "https://partners.example"


@pytest.mark.slow
def test_make_run_answers_the_partner_api_on_gunicorn(tmp_path: Path) -> None:
    port, partner_port = free_port(), free_port()
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(BASE_DIR / 'scripts')!r})\n"
        "import run_all\n"
        f"partner = run_all.partner_spec(host='127.0.0.1', port={partner_port}, drain_seconds=5.0)\n"
        "specs = [\n"
        f"    run_all.ProcessSpec('web', [sys.executable, '-m', 'http.server', '--bind', '127.0.0.1', '{port}']),\n"
        "    partner,\n"
        "    run_all.ProcessSpec('client', [sys.executable, '-c', 'import time; time.sleep(600)'], after_web=True),\n"
        "]\n"
        f"sys.exit(run_all.run(specs, host='127.0.0.1', port={port}, partner_port={partner_port}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_"))}
    env.update(DEBUG="1", TMS_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1", OTEL_SDK_DISABLED="true")
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        partner_url = f"http://127.0.0.1:{partner_port}"
        deadline = time.monotonic() + 60
        answer = None
        while answer is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(f"{partner_url}/api/v1/tenders", timeout=5)
            except httpx.TransportError:
                time.sleep(0.3)
        assert answer is not None, "the partner server never answered"
        # The partner API itself (DRF, problem documents), served by gunicorn.
        assert answer.status_code == 401
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.headers["server"] == "gunicorn"
        metadata = httpx.get(f"{partner_url}/.well-known/oauth-authorization-server", timeout=5)
        assert metadata.status_code == 200 and metadata.headers["server"] == "gunicorn"
        assert metadata.json()["token_endpoint"].endswith("/oauth2/token")
        time.sleep(1.0)  # the banner and the client's start follow the servers' readiness
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    banner_at = output.index(f"running: http://127.0.0.1:{port}/")
    assert f"Partner API and webhooks (gunicorn): {partner_url}/api/v1/" in output
    # The clients (simulators) start only once both servers listen.
    assert output.index("| started client") > banner_at
    assert "partner stopped (" in output, output
    assert "all processes stopped, each within its drain time" in output

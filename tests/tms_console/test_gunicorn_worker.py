"""gunicorn's own refusals (before the application) are problem documents, as every other API error."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.servers import GUNICORN_PROBLEM_WORKER, start_app_server


@pytest.mark.server_process
@pytest.mark.django_db(transaction=True)
def test_gunicorn_answers_its_own_refusals_as_problem_documents(tmp_path: Path) -> None:
    server = start_app_server("gunicorn", log_path=tmp_path / "gunicorn.log", gunicorn_options=GUNICORN_PROBLEM_WORKER)
    try:
        too_long = requests.get(f"{server.url}/api/v1/tenders?q={'x' * 9000}", timeout=10)
        assert too_long.status_code == 414, too_long.text
        assert too_long.headers["Content-Type"] == "application/problem+json"
        body: dict[str, Any] = too_long.json()
        assert body["status"] == 414 and body["type"] == "/api/v1/problems/uri-too-long"
        # Within the limit the application answers (here: no token).
        assert requests.get(f"{server.url}/api/v1/tenders?q={'x' * 8000}", timeout=10).status_code == 401

        address = urlparse(server.url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
            raw.sendall(b"GET /api/v1/tenders HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
            answer = raw.recv(4096).decode("latin-1")
        assert answer.startswith("HTTP/1.1 400"), answer
        assert "Content-Type: application/problem+json" in answer
        assert '"type": "/api/v1/problems/malformed-request"' in answer
    finally:
        server.stop()

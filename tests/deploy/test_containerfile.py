"""The Containerfile and .dockerignore, checked as text: no image can be built on this machine
(the base image cannot be pulled; docs/deploy.md), so these rules stand in for the build."""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
# Build tools that must never reach the image that runs.
COMPILERS = {"gcc", "g++", "cc", "clang", "make", "build-essential", "cmake", "rustc", "cargo"}
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [text for word, text in self.instructions if word == keyword]


def parse(text: str) -> list[Stage]:
    """Instructions per stage (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    stages: list[Stage] = []
    defaults: dict[str, str] = {}  # ARGs before the first FROM: what ${NAME} in a FROM line stands for by default
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, value = rest.strip().partition("=")
            defaults[name] = value
            continue
        if keyword == "FROM":
            rest = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults.get(m.group(1) or m.group(2), m.group(0)), rest)
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(image=parts[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def _env(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for text in stage.args("ENV"):
        for item in shlex.split(text):
            key, _, value = item.partition("=")
            values[key] = value
    return values


def check(text: str) -> list[str]:
    """Every rule the Containerfile breaks (an empty list: it keeps them all)."""
    problems: list[str] = []
    stages = parse(text)
    if len(stages) < 2:
        return ["not multi-stage"]
    for stage in stages:
        if stage.image in {s.name for s in stages}:
            continue  # FROM an earlier stage
        tag = stage.image.rpartition("/")[2]
        if not PINNED.match(stage.image) or not (":" in tag or "@sha256:" in stage.image) or ":latest" in tag:
            problems.append(f"base image not pinned to a release or digest: {stage.image}")
    final = stages[-1]
    users = final.args("USER")
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        problems.append("the final stage does not run as a non-root user")
    for text in final.args("RUN"):
        words = set(re.split(r"[\s;&|]+", text))
        if words & COMPILERS or any(w.endswith("-dev") for w in words) or "pip" in words:
            problems.append(f"the final stage installs build tools: {text}")
    for text in final.args("COPY"):
        if text.startswith("--from="):
            source = text.split()[1]
            if source not in {"/opt/venv", "/app"}:
                problems.append(f"the final stage copies more than the venv and the application: {text}")
    collect = [t for s in stages[:-1] for t in s.args("RUN") if re.search(r"manage\.py collectstatic\b", t)]
    if not collect:
        problems.append("collectstatic does not run at build")
    else:
        built_root = re.search(r"STATIC_ROOT=(\S+)", collect[0])
        if not built_root or _env(final).get("STATIC_ROOT") != built_root.group(1):
            problems.append("the runtime STATIC_ROOT is not where collectstatic wrote")
    if not _env(final).get("TMS_VAR_DIR"):
        problems.append("no TMS_VAR_DIR: the settings would write inside the read-only application tree")
    if not final.args("HEALTHCHECK"):
        problems.append("no HEALTHCHECK instruction (HEALTHCHECK NONE when the orchestrator probes)")
    return problems


def test_the_containerfile_keeps_every_rule() -> None:
    assert check((BASE_DIR / "Containerfile").read_text()) == []


def test_health_is_probed_by_the_manifests_when_the_image_has_no_healthcheck() -> None:
    stages = parse((BASE_DIR / "Containerfile").read_text())
    if stages[-1].args("HEALTHCHECK") != ["NONE"]:
        return
    for server in ("web.yaml", "partner-ingest.yaml"):
        text = (BASE_DIR / "deploy" / "k8s" / "base" / server).read_text()
        assert re.search(r"livenessProbe:\s+httpGet:\s+path: /healthz", text), server
        assert re.search(r"readinessProbe:\s+httpGet:\s+path: /readyz", text), server


GOOD = (BASE_DIR / "Containerfile").read_text()


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        (GOOD.replace("USER 10001:10001", "USER root"), "non-root"),
        (GOOD.replace("USER 10001:10001\n", ""), "non-root"),
        (GOOD.replace("FROM ${BASE_IMAGE} AS runtime", "FROM python:3.11-slim AS runtime"), "not pinned"),
        (GOOD.replace("FROM ${BASE_IMAGE} AS build", "FROM python:latest AS build"), "not pinned"),
        (GOOD.replace("python:3.11.14-slim-bookworm\n", "python:3.11-slim\n"), "not pinned"),
        (
            GOOD.replace("RUN groupadd", "RUN apt-get install -y build-essential && groupadd"),
            "build tools",
        ),
        (GOOD.replace("COPY --from=build /app /app", "COPY --from=build /usr/bin /usr/bin"), "copies more"),
        (GOOD.replace("manage.py collectstatic", "manage.py check"), "collectstatic"),
        (GOOD.replace("STATIC_ROOT=/app/staticfiles\n", "STATIC_ROOT=/srv/static\n"), "STATIC_ROOT"),
        (GOOD.replace("HEALTHCHECK NONE", ""), "HEALTHCHECK"),
        (GOOD.split("# --- runtime")[0], "multi-stage"),
    ],
)
def test_the_checks_catch_a_bad_containerfile(broken: str, problem: str) -> None:
    assert broken != GOOD
    assert any(problem in p for p in check(broken)), check(broken)


def _ignored(patterns: list[str], path: str) -> bool:
    """Whether the build context leaves ``path`` out (last matching pattern wins, ``!`` re-includes)."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_leaves_out_secrets_and_local_state_but_not_what_the_app_reads() -> None:
    lines = (BASE_DIR / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (".git/config", ".venv/bin/python", ".env", "var/tms.sqlite3", "tests/conftest.py", ".venv-deploy/x"):
        assert _ignored(patterns, path), path
    # Read at run time: the carrier API contract (missions/tendering/carrier_contract.py), the event schemas.
    for path in ("docs/carrier-api.yaml", "docs/events/x.json", "manage.py", "static/root/favicon.ico", ".env.example"):
        assert not _ignored(patterns, path), path

"""Every curl example in the README and in docs/EXAMPLES.md runs, in order, against the server the
README's first command (scripts/serve) starts on the shipped models, and answers what the page
shows (JSON compared as data, text line by line). Each page gets its own fresh server, so the
examples that read counters (metrics, CDS feedback) see only their own page's requests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server import REPO, free_port, running

pytestmark = pytest.mark.slow

EXAMPLE = re.compile(r"```sh\n(curl [^\n]+)\n```\n```(json|text)\n(.*?)\n```", re.DOTALL)
PAGES = ("README.md", "docs/EXAMPLES.md")


def examples(page: str) -> list[tuple[str, str, str]]:
    return EXAMPLE.findall((REPO / page).read_text())


def test_examples_page_has_a_curl_example_for_every_json_api_route() -> None:
    commands = " ".join(cmd for cmd, _, _ in examples("docs/EXAMPLES.md"))
    for route in (
        "/health/live",
        "/health/ready",
        "/v1/models ",
        "/v1/models/ich ",
        "/card",
        "/weaning/predict",
        "/ich/predict",
        "/predict/batch",
        "/metrics",
        "/v2/models/weaning/infer",
        "/cds-services/ecmo-weaning-risk",
        "/feedback",
    ):
        assert route.strip() in commands, route


def test_readme_has_one_example_per_protocol() -> None:
    commands = [cmd for cmd, _, _ in examples("README.md")]
    for prefix in ("/v1/", "/v2/", "/cds-services"):
        assert any(f"localhost:8000{prefix}" in cmd for cmd in commands), prefix


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by .ci/run")
@pytest.mark.parametrize("page", PAGES)
def test_curl_examples_answer_as_written(page: str, tmp_path: Path) -> None:
    cases = examples(page)
    assert len(cases) >= 3
    # The README's first command itself (scripts/serve: set-up, then gunicorn on the shipped
    # models), on a free port instead of 8000.
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ECMO_")},
        "ECMO_BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
    }
    serve = [str(REPO / "scripts" / "serve")]
    with running(serve, env, REPO, port, tmp_path / "serve.log", ready_timeout=300) as server:
        base = server.url.removeprefix("http://")
        for command, kind, expected in cases:
            run = subprocess.run(
                ["bash", "-c", command.replace("localhost:8000", base)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert run.returncode == 0, (command, run.stderr)
            if kind == "json":
                assert json.loads(run.stdout) == json.loads(expected), command
            else:
                assert sorted(run.stdout.rstrip("\n").splitlines()) == sorted(
                    expected.splitlines()
                ), command

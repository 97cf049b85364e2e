"""Every curl example in the README runs, in order, against the server the README's first command
(scripts/serve) starts on the shipped models, and answers what the README shows (JSON compared as
data, text line by line)."""

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


def examples() -> list[tuple[str, str, str]]:
    return EXAMPLE.findall((REPO / "README.md").read_text())


def test_readme_has_a_curl_example_for_every_json_api_route() -> None:
    commands = " ".join(cmd for cmd, _, _ in examples())
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
    ):
        assert route.strip() in commands, route


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by .ci/run")
def test_readme_curl_examples_answer_as_written(tmp_path: Path) -> None:
    cases = examples()
    assert len(cases) >= 10
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

"""Every curl example in the README runs, in order, against a fresh real server with the shipped
models and answers what the README shows (JSON compared as data, text line by line)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server import REPO, gunicorn

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
    with gunicorn(tmp_path, {"ECMO_MODEL_DIR": str(REPO / "models")}) as server:
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

"""One way to start the service: `ecmo-serve`, `python -m service`, scripts/serve and the
Dockerfile's CMD run the same gunicorn command, and the first two serve from any directory."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from service.__main__ import APP, CONFIG, gunicorn_argv
from tests.deploy.harness import parse_dockerfile
from tests.server import REPO, free_port, ready_status, running


def test_every_entry_point_runs_the_same_gunicorn_command() -> None:
    assert CONFIG == REPO / "service" / "gunicorn_conf.py"
    assert gunicorn_argv(["--workers", "3"]) == [
        "gunicorn",
        "-c",
        str(CONFIG),
        APP,
        "--workers",
        "3",
    ]
    assert parse_dockerfile().cmd == ["gunicorn", "-c", "service/gunicorn_conf.py", APP]
    serve = (REPO / "scripts" / "serve").read_text()
    (line,) = [x for x in serve.splitlines() if x.startswith("exec ")]
    assert re.fullmatch(
        r"""exec "?\S+/gunicorn"? -c service/gunicorn_conf.py 'service.app:create_app\(\)'""", line
    )


@pytest.mark.slow
@pytest.mark.parametrize("how", ["python -m service", "ecmo-serve"])
def test_entry_point_serves_the_models_from_any_directory(how: str, tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    argv = (
        [sys.executable, "-m", "service"] if how != "ecmo-serve" else [str(bin_dir / "ecmo-serve")]
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ECMO_")},
        "ECMO_BIND": f"127.0.0.1:{port}",
        "ECMO_WORKERS": "1",
        "ECMO_MODEL_DIR": str(REPO / "models"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
    }
    (tmp_path / "prom").mkdir()
    with running(argv, env, tmp_path, port, tmp_path / "serve.log") as server:
        assert ready_status(server.port) == 200

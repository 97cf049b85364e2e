"""ecmo-train without the training extra (matplotlib) says what to install instead of crashing."""

from __future__ import annotations

import subprocess
import sys

from tests.server import REPO

# matplotlib made unimportable, as in an install without the [train] extra.
WITHOUT_MATPLOTLIB = (
    "import sys; sys.modules['matplotlib'] = None; "
    "from service.training.__main__ import main; "
    "sys.exit(main(['weaning', '--simulate', '--n', '50', '--out', sys.argv[1]]))"
)


def test_ecmo_train_without_the_training_extra_says_what_to_install(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, str(tmp_path / "models")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "ecmo-risk-service[train]" in done.stderr
    assert "matplotlib" in done.stderr
    assert not (tmp_path / "models").exists()  # nothing written

from __future__ import annotations

from pathlib import Path

import pytest

from service.training.__main__ import main


@pytest.fixture(scope="module")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both kinds trained on small simulated cohorts into a fresh model directory."""
    out = tmp_path_factory.mktemp("models")
    for kind, n in (("weaning", 3000), ("ich", 4000)):
        code = main([kind, "--simulate", "--n", str(n), "--bootstrap", "200", "--out", str(out)])
        assert code == 0
    return out

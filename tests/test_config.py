from __future__ import annotations

from pathlib import Path

import pytest

from service.config import REPO_MODELS_DIR, ConfigError, load_settings


def test_defaults_serve_the_repository_models() -> None:
    s = load_settings({})
    assert s.model_dir == REPO_MODELS_DIR and s.max_batch == 1000 and s.workers == 2


def test_values_are_read_from_the_given_environment() -> None:
    s = load_settings(
        {
            "ECMO_MODEL_DIR": "/m",
            "ECMO_MAX_BATCH": "5",
            "ECMO_DEFAULT_VERSIONS": "weaning=1.0.0, ich=2.0.0",
            "ECMO_FFP_ML_PER_UNIT": "250",
        }
    )
    assert s.model_dir == Path("/m") and s.max_batch == 5 and s.ffp_ml_per_unit == 250
    assert s.default_versions == {"weaning": "1.0.0", "ich": "2.0.0"}


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ECMO_MAX_BATCH": "many"}, "ECMO_MAX_BATCH"),
        ({"ECMO_WORKERS": "0"}, "ECMO_WORKERS"),
        ({"ECMO_DEFAULT_VERSIONS": "weaning"}, "ECMO_DEFAULT_VERSIONS"),
        ({"ECMO_CDS_JWT_REQUIRED": "maybe"}, "ECMO_CDS_JWT_REQUIRED"),
        ({"ECMO_CDS_JWT_REQUIRED": "true"}, "ECMO_CDS_JWT_REQUIRED"),
        ({"ECMO_LOG_LEVEL": "loud"}, "ECMO_LOG_LEVEL"),
        ({"ECMO_FFP_ML_PER_UNIT": "5"}, "ECMO_FFP_ML_PER_UNIT"),
    ],
)
def test_bad_values_fail_fast_naming_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(env)

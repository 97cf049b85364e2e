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
        ({"ECMO_PROXY": "haproxy"}, "ECMO_PROXY"),
        ({"ECMO_METRICS_BIND": "9100"}, "ECMO_METRICS_BIND"),
        ({"ECMO_BIND": "0.0.0.0:80", "ECMO_METRICS_BIND": "0.0.0.0:80"}, "ECMO_METRICS_BIND"),
        ({"ECMO_CLIENT_TIMEOUT": "0"}, "ECMO_CLIENT_TIMEOUT"),
        ({"ECMO_MAX_REQUESTS": "-1"}, "ECMO_MAX_REQUESTS"),
    ],
)
def test_bad_values_fail_fast_naming_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(env)


def test_process_model_defaults_put_nginx_in_front_and_metrics_on_the_main_port() -> None:
    s = load_settings({})
    assert s.proxy == "nginx" and s.metrics_bind is None and s.client_timeout == 10
    assert s.max_requests == 0 and s.max_requests_jitter == 0
    s = load_settings(
        {
            "ECMO_PROXY": "off",
            "ECMO_METRICS_BIND": "0.0.0.0:9100",
            "ECMO_MAX_REQUESTS": "5000",
            "ECMO_MAX_REQUESTS_JITTER": "500",
        }
    )
    assert s.proxy == "off" and s.metrics_bind == "0.0.0.0:9100"
    assert (s.max_requests, s.max_requests_jitter) == (5000, 500)

"""A CDS JWT is accepted once per pod, not once per gunicorn worker (issue 15, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.cds import fhir
from tests.cds.test_cds_auth import ISSUER, SERVICE, jwks, token
from tests.factories import write_model
from tests.server import gunicorn

pytestmark = pytest.mark.slow

PUBLIC = "https://cds.hospital.example"


def test_a_token_is_accepted_once_across_two_workers(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_model(models, "weaning")
    write_model(models, "ich")
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks()))
    env = {
        "ECMO_MODEL_DIR": str(models),
        "ECMO_CDS_JWT_REQUIRED": "true",
        "ECMO_CDS_JWKS_FILE": str(keys),
        "ECMO_CDS_ALLOWED_ISSUERS": ISSUER,
        "ECMO_PUBLIC_BASE_URL": PUBLIC,
    }
    with gunicorn(tmp_path, env, workers=2) as server:
        workers = server.wait_workers(2, timeout=30)
        jwt_token = token(aud=PUBLIC + SERVICE)
        body = fhir.cds_request(fhir.weaning_prefetch())
        statuses, rules = [], []
        for _ in range(16):
            # A new connection per request lets the kernel spread requests over the workers.
            r = requests.post(
                server.url + SERVICE,
                json=body,
                headers={"Authorization": f"Bearer {jwt_token}", "Connection": "close"},
                timeout=10,
            )
            statuses.append(r.status_code)
            if r.status_code == 401:
                rules.append(r.json()["errors"][0]["rule"])
        multiproc = next(tmp_path.glob("prom-*"))
        answered = {p.stem.rsplit("_", 1)[1] for p in multiproc.glob("counter_*.db")}
        assert (multiproc / "cds-jti").is_dir()  # the default shared record
    print(f"\n16 tries answered by workers {sorted(answered)} of {sorted(workers)}")
    assert len(answered & {str(w) for w in workers}) == 2, "requests were not spread over workers"
    assert statuses.count(200) == 1, statuses
    assert rules == ["replay"] * 15

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
        # Straight to gunicorn: nginx's upstream connections may all land on one worker, and the
        # point is that two workers see the same token.
        "ECMO_PROXY": "off",
    }
    with gunicorn(tmp_path, env, workers=2) as server:
        workers = server.wait_workers(2, timeout=30)
        jwt_token = token(aud=PUBLIC + SERVICE)
        body = fhir.cds_request(fhir.weaning_prefetch())
        statuses: list[int] = []
        rules: list[str] = []
        multiproc = next(tmp_path.glob("prom-*"))
        answered: set[str] = set()
        # At least 16 tries, and on until both workers have answered (the kernel decides which
        # worker accepts a connection, so a fixed count may land on one worker only).
        while len(statuses) < 16 or (len(answered) < 2 and len(statuses) < 400):
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
            answered = {p.stem.rsplit("_", 1)[1] for p in multiproc.glob("counter_*.db")}
            answered &= {str(w) for w in workers}
        assert (multiproc / "cds-jti").is_dir()  # the default shared record
    print(f"\n{len(statuses)} tries answered by workers {sorted(answered)} of {sorted(workers)}")
    assert len(answered) == 2, "requests were not spread over workers"
    assert statuses.count(200) == 1, statuses
    assert rules == ["replay"] * (len(statuses) - 1)

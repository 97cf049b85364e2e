"""Names and versions are said once: the image name, the service version, the licence."""

from __future__ import annotations

import re
import tomllib

import yaml

import service
from tests.server import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()
CHART = yaml.safe_load((REPO / "helm" / "ecmo-risk" / "Chart.yaml").read_text())
VALUES = yaml.safe_load((REPO / "helm" / "ecmo-risk" / "values.yaml").read_text())
OPENAPI_INFO = yaml.safe_load((REPO / "openapi.yaml").read_text())["info"]


def label(name: str) -> str:
    match = re.search(rf'org\.opencontainers\.image\.{name}="([^"]+)"', DOCKERFILE)
    assert match is not None, name
    return match[1]


def test_the_image_has_one_name() -> None:
    name = PYPROJECT["project"]["name"]
    assert name == "ecmo-risk-service"
    assert VALUES["image"]["repository"] == name
    assert label("title") == name
    built_as = re.findall(r"docker build -t ([\w.-]+)", DOCKERFILE)
    assert built_as == [name]
    chart_readme = (REPO / "helm" / "ecmo-risk" / "README.md").read_text()
    assert set(re.findall(r"docker build -t ([\w.-]+):", chart_readme)) == {name}


def test_the_service_chart_api_and_image_share_one_version() -> None:
    version = service.__version__
    assert CHART["appVersion"] == version
    assert CHART["version"] == version
    assert OPENAPI_INFO["version"] == version
    assert label("version") == version
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## [{version}]" in changelog


def test_one_licence_everywhere() -> None:
    spdx = OPENAPI_INFO["license"]["identifier"]
    assert PYPROJECT["project"]["license"] == spdx
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert label("licenses") == spdx
    assert f"SPDX: {spdx}" in (REPO / "LICENSE").read_text().splitlines()[0]

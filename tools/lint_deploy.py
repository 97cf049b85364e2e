"""The Helm chart's lint (run by scripts/lint-deploy in its helm-sdkpy venv, Python >= 3.12):
lint and render the chart for several value sets, validate the rendered objects against the
Kubernetes schemas and what the service needs, and check that the guards refuse bad values.

    python tools/lint_deploy.py helm/ecmo-risk service/config.py

Exit status 0 when everything is clean, 1 on any finding.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import helm_sdkpy
import jsonschema
import kubernetes_validate
import yaml

SEVERITY = {1: "INFO", 2: "WARNING", 3: "ERROR"}


@dataclass(frozen=True)
class Chart:
    path: Path
    ecmo_names: set[str]  # the ECMO_* variables service/config.py reads
    kube_versions: tuple[str, ...]  # the oldest and newest Kubernetes we support
    defaults: dict[str, Any]
    schema: dict[str, Any]

    @classmethod
    def read(cls, path: Path, config_py: Path) -> Chart:
        schema = json.loads((path / "values.schema.json").read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        return cls(
            path,
            set(re.findall(r'"(ECMO_[A-Z_]+)"', config_py.read_text())),
            ("1.25.0", kubernetes_validate.latest_version()),
            yaml.safe_load((path / "values.yaml").read_text()),
            schema,
        )


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def lint(chart: Chart, values: dict[str, Any]) -> list[str]:
    """Helm lint of a copy of the chart whose values.yaml is `values`; returns the findings."""
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = Path(tmp) / chart.path.name
        shutil.copytree(chart.path, copy_dir)
        (copy_dir / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        # Helm's lint mode only logs a template's `fail` (to fd 2, from Go) and renders on; catch
        # those lines so a guard that fires counts as a finding.
        log_path = Path(tmp) / "helm.log"
        saved = os.dup(2)
        with open(log_path, "wb") as log:
            os.dup2(log.fileno(), 2)
            try:
                result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(str(copy_dir)))
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        helm_log = log_path.read_text(errors="replace").splitlines()
    findings = [f"ERROR template fail: {line}" for line in helm_log if "fail" in line]
    for message in result.get("Messages") or []:
        # helm-sdkpy may return empty error texts: the path and severity are what we have.
        text = message.get("Err") or ""
        severity = SEVERITY.get(message.get("Severity"), message.get("Severity"))
        findings.append(f"{severity} {message.get('Path')} {text}".rstrip())
    if result.get("TotalChartsLinted") != 1:
        findings.append(f"linted {result.get('TotalChartsLinted')} charts, expected 1")
    return findings


def schema_errors(chart: Chart, values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(chart.schema)
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(values)
    ]


# --- rendering: helm install into a fake Kubernetes API that records what it is sent ----------

API = {  # (group, version) -> [(resource, kind, namespaced)]
    ("", "v1"): [
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("configmaps", "ConfigMap", True),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
    ],
    ("apps", "v1"): [("deployments", "Deployment", True)],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True)],
    ("monitoring.coreos.com", "v1"): [
        ("servicemonitors", "ServiceMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
    ],
}


class FakeKube(BaseHTTPRequestHandler):
    created: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, code: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read(self) -> dict[str, Any] | None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # Helm stores its release record as a protobuf Secret; only JSON bodies are chart objects.
        return json.loads(raw) if "json" in (self.headers.get("Content-Type") or "") else None

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/version":
            return self.reply(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0"})
        if path == "/api":
            return self.reply(
                200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        if path == "/apis":
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                    "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                }
                for g, v in API
                if g
            ]
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for (group, version), resources in API.items():
            if path == (f"/apis/{group}/{version}" if group else f"/api/{version}"):
                return self.reply(
                    200,
                    {
                        "kind": "APIResourceList",
                        "groupVersion": f"{group}/{version}".lstrip("/"),
                        "resources": [
                            {
                                "name": n,
                                "singularName": "",
                                "namespaced": ns,
                                "kind": k,
                                "verbs": ["create", "get", "list", "update", "delete"],
                            }
                            for n, k, ns in resources
                        ],
                    },
                )
        if path.endswith("/secrets"):  # Helm's release history: none yet
            return self.reply(
                200, {"kind": "List", "apiVersion": "v1", "items": [], "metadata": {}}
            )
        return self.reply(
            404,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
            },
        )

    def do_POST(self) -> None:
        obj = self.read()
        if obj is None:
            return self.reply(
                201,
                {
                    "kind": "Secret",
                    "apiVersion": "v1",
                    "metadata": {"name": "release", "resourceVersion": "1"},
                },
            )
        self.created.append(copy.deepcopy(obj))
        obj.setdefault("metadata", {})["resourceVersion"] = "1"
        return self.reply(201, obj)

    do_PUT = do_POST


def render(chart: Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    FakeKube.created = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKube)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        kubeconfig = yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            }
        )
        config = helm_sdkpy.Configuration(namespace="ecmo", kubeconfig=kubeconfig)
        asyncio.run(
            helm_sdkpy.Install(config).run(
                "demo", str(chart.path), values=values, wait=False, timeout=60
            )
        )
    finally:
        server.shutdown()
        server.server_close()
    return FakeKube.created


def check_objects(chart: Chart, values: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """kubernetes-validate for built-in kinds, then what the service needs from the objects."""
    findings: list[str] = []
    by_kind: dict[str, dict[str, Any]] = {}
    for obj in objects:
        by_kind[obj["kind"]] = obj
        if obj["kind"] in ("ServiceMonitor", "PrometheusRule"):
            continue  # a CRD: no schema in kubernetes-validate; checked below
        for version in chart.kube_versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                findings.append(f"{obj['kind']} (k8s {version}): {exc.message}")

    def need(ok: bool, what: str) -> None:
        if not ok:
            findings.append(what)

    want = {"Deployment", "Service", "ServiceAccount"}
    want |= {"HorizontalPodAutoscaler"} if values["autoscaling"]["enabled"] else set()
    want |= {"PodDisruptionBudget"} if values["podDisruptionBudget"]["enabled"] else set()
    want |= {"ServiceMonitor"} if values["metrics"]["serviceMonitor"]["enabled"] else set()
    want |= {"NetworkPolicy"} if values["networkPolicy"]["enabled"] else set()
    want |= {"PrometheusRule"} if values["metrics"]["prometheusRule"]["enabled"] else set()
    want |= {"ConfigMap"} if values["metrics"]["grafanaDashboard"]["enabled"] else set()
    need(set(by_kind) == want, f"objects {sorted(by_kind)}, expected {sorted(want)}")
    deploy = by_kind["Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    selector = deploy["spec"]["selector"]["matchLabels"]
    need(selector.items() <= pod_labels.items(), "Deployment selector does not match its pods")

    for probe, path in (
        ("startupProbe", "/health/ready"),
        ("readinessProbe", "/health/ready"),
        ("livenessProbe", "/health/live"),
    ):
        get = container.get(probe, {}).get("httpGet", {})
        need(get.get("path") == path and get.get("port") == "http", f"{probe} not GET {path}")
    need(container["ports"][0]["name"] == "http", "container port is not named http")
    need(
        env.get("ECMO_BIND", "").endswith(f":{container['ports'][0]['containerPort']}"),
        "ECMO_BIND does not use the container port",
    )
    unknown = {n for n in env if n.startswith("ECMO_")} - chart.ecmo_names
    need(not unknown, f"env {sorted(unknown)} not read by service/config.py")

    res = container.get("resources", {})
    for kind in ("requests", "limits"):
        need({"cpu", "memory"} <= set(res.get(kind, {})), f"resources.{kind} needs cpu and memory")
    sc, psc = container["securityContext"], pod["securityContext"]
    need(sc.get("runAsNonRoot") is True or psc.get("runAsNonRoot") is True, "runAsNonRoot")
    need(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
    need(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities must drop ALL")
    need(
        (sc.get("seccompProfile") or psc.get("seccompProfile", {})).get("type") == "RuntimeDefault",
        "seccompProfile RuntimeDefault",
    )
    need(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for mount_path in ("/tmp", env.get("PROMETHEUS_MULTIPROC_DIR")):
        vol = volumes.get(mounts.get(mount_path, ""), {})
        need(vol.get("emptyDir", {}).get("medium") == "Memory", f"{mount_path}: emptyDir Memory")

    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    need(sleep[0] == "sleep", "preStop must sleep")
    drain = int(sleep[1]) + int(env["ECMO_GRACEFUL_TIMEOUT"])
    need(
        pod["terminationGracePeriodSeconds"] > drain,
        f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} <= preStop + "
        f"graceful timeout ({drain})",
    )

    # CDS JWT follows the values (on by default), with the audience it needs.
    need(
        env.get("ECMO_CDS_JWT_REQUIRED") == str(values["config"]["cds"]["jwtRequired"]).lower(),
        "ECMO_CDS_JWT_REQUIRED does not follow config.cds.jwtRequired",
    )
    if values["config"]["cds"]["jwtRequired"]:
        need(bool(env.get("ECMO_PUBLIC_BASE_URL")), "JWT on without ECMO_PUBLIC_BASE_URL")
    # A Secret's value reaches the container only by reference, never as a literal env value.
    explain = next((e for e in container["env"] if e["name"] == "ECMO_EXPLAIN_KEYS"), None)
    if values["explain"]["existingSecret"]:
        ref = (explain or {}).get("valueFrom", {}).get("secretKeyRef", {})
        need(
            ref
            == {"name": values["explain"]["existingSecret"], "key": values["explain"]["secretKey"]},
            "ECMO_EXPLAIN_KEYS is not read from the explain Secret",
        )
    else:
        need(explain is None, "ECMO_EXPLAIN_KEYS set without explain.existingSecret")
    keys = values["apiKeys"]
    if keys["existingSecret"]:
        key_file = env.get("ECMO_API_KEYS_FILE", "")
        mount = next(
            (m for m in container["volumeMounts"] if key_file.startswith(m["mountPath"] + "/")),
            None,
        )
        secret = volumes.get(mount["name"], {}).get("secret", {}) if mount else {}
        need(
            secret.get("secretName") == keys["existingSecret"]
            and mount is not None
            and mount.get("readOnly") is True,
            "ECMO_API_KEYS_FILE is not a file of the read-only mounted apiKeys Secret",
        )
    else:
        need(
            "ECMO_API_KEYS_FILE" not in env, "ECMO_API_KEYS_FILE set without apiKeys.existingSecret"
        )
    if values["networkPolicy"]["enabled"]:
        np = by_kind["NetworkPolicy"]["spec"]
        need(
            np["podSelector"]["matchLabels"].items() <= pod_labels.items(),
            "NetworkPolicy does not select the pods",
        )
        need(np["policyTypes"] == ["Ingress"], "NetworkPolicy must restrict ingress")
        allowed = set()
        for rule in np.get("ingress") or []:
            for peer in rule.get("from", []):
                for expr in peer.get("namespaceSelector", {}).get("matchExpressions", []):
                    if expr["key"] == "kubernetes.io/metadata.name":
                        allowed |= set(expr["values"])
                need(
                    peer.get("namespaceSelector") is not None,
                    "NetworkPolicy peer without namespaceSelector (would mean the pod's own namespace only by accident)",
                )
        expected = set(values["networkPolicy"]["allowedNamespaces"])
        expected |= {"ecmo"} if values["networkPolicy"]["allowSameNamespace"] else set()
        need(
            allowed == expected,
            f"NetworkPolicy admits namespaces {sorted(allowed)}, expected {sorted(expected)}",
        )
        np_ports = {p.get("port") for r in np.get("ingress") or [] for p in r.get("ports", [])}
        need(
            not expected or values["metrics"]["portName"] in np_ports,
            "NetworkPolicy does not admit the metrics port (scrapes would be dropped)",
        )

    mv = values["models"]["volume"]
    if mv["enabled"]:
        model_mount = [m for m in container["volumeMounts"] if m["name"] == "models"]
        need(
            len(model_mount) == 1 and model_mount[0].get("readOnly") is True,
            "models volume mounted read-only",
        )
        need(
            env.get("ECMO_MODEL_DIR", "").startswith(mv["mountPath"]),
            "ECMO_MODEL_DIR is not under the models mount",
        )
    else:
        need("ECMO_MODEL_DIR" not in env, "ECMO_MODEL_DIR set without a models volume")

    service = by_kind["Service"]
    need(service["spec"]["selector"].items() <= pod_labels.items(), "Service selects no pods")
    port_names = {p.get("name") for p in service["spec"]["ports"]}
    need(
        port_names == {values["service"]["portName"], values["metrics"]["portName"]},
        "Service ports are not named",
    )
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    need(
        env.get("ECMO_METRICS_BIND") == f"0.0.0.0:{ports.get(values['metrics']['portName'])}",
        "ECMO_METRICS_BIND does not use the metrics container port",
    )
    need(
        env.get("ECMO_PROXY") == "nginx" or not values["proxy"]["enabled"],
        "nginx is not in front of gunicorn",
    )
    if "HorizontalPodAutoscaler" in by_kind:
        hpa = by_kind["HorizontalPodAutoscaler"]
        need(hpa["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"], "HPA target")
        need([m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"], "HPA on CPU")
        need("replicas" not in deploy["spec"], "Deployment.replicas fights the HPA")
    if "PodDisruptionBudget" in by_kind:
        need(
            by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector,
            "PDB selector differs from the Deployment's",
        )
    if "ServiceMonitor" in by_kind:
        sm = by_kind["ServiceMonitor"]
        need(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
        need(
            sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(),
            "ServiceMonitor selects no Service",
        )
        need(
            {e["port"] for e in sm["spec"]["endpoints"]} == {values["metrics"]["portName"]},
            "ServiceMonitor does not scrape the metrics port",
        )
        need(
            values["metrics"]["serviceMonitor"]["labels"].items()
            <= sm["metadata"]["labels"].items(),
            "ServiceMonitor labels from values",
        )
    if "PrometheusRule" in by_kind:
        rule = by_kind["PrometheusRule"]
        shipped = yaml.safe_load((chart.path / "files" / "prometheus-rules.yaml").read_text())
        need(
            rule["spec"] == shipped, "PrometheusRule spec differs from files/prometheus-rules.yaml"
        )
        need(
            values["metrics"]["prometheusRule"]["labels"].items()
            <= rule["metadata"]["labels"].items(),
            "PrometheusRule labels from values",
        )
    if "ConfigMap" in by_kind:
        dashboard = by_kind["ConfigMap"]
        need(
            values["metrics"]["grafanaDashboard"]["labels"].items()
            <= dashboard["metadata"]["labels"].items(),
            "dashboard ConfigMap sidecar label",
        )
        need(
            dashboard["metadata"]["labels"].get("grafana_dashboard") == "1"
            or "grafana_dashboard" not in chart.defaults["metrics"]["grafanaDashboard"]["labels"],
            'dashboard ConfigMap lacks grafana_dashboard: "1"',
        )
        shipped = json.loads((chart.path / "files" / "grafana-dashboard.json").read_text())
        (text,) = dashboard["data"].values()
        need(
            json.loads(text) == shipped,
            "dashboard ConfigMap differs from files/grafana-dashboard.json",
        )
    return findings


# JWT is on by default: an install names the EHR it trusts (or turns JWT off explicitly).
EHR_TRUST = {
    "config": {
        "publicBaseUrl": "https://cds.example.org",
        "cds": {
            "jwksUrls": ["https://ehr.example.org/jwks"],
            "allowedIssuers": ["https://ehr.example.org"],
        },
    }
}
GOOD: dict[str, dict[str, Any]] = {
    "defaults + the EHR it trusts": EHR_TRUST,
    "JWT off explicitly, no network policy": {
        "config": {"cds": {"jwtRequired": False}},
        "networkPolicy": {"enabled": False},
    },
    "all options on": {
        "autoscaling": {"enabled": False},
        "replicaCount": 3,
        "podDisruptionBudget": {"maxUnavailable": None, "minAvailable": "50%"},
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prom"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prom"}},
        },
        "models": {
            "volume": {"enabled": True, "existingClaim": "hospital-models", "subPath": "ecmo"}
        },
        "config": {
            "defaultVersions": {"weaning": "1.0.0", "ich": "1.0.0"},
            "ffpMlPerUnit": 250,
            "publicBaseUrl": "https://cds.example.org",
            "fhirMappingDir": "/etc/ecmo/fhir-mappings",
            "cds": {
                "jwtRequired": True,
                "jwksUrls": ["https://ehr.example.org/jwks"],
                "jwksFile": "/etc/ecmo/jwks/ehr.json",
                "allowedIssuers": ["https://ehr.example.org"],
            },
            "fhir": {"serverAllowlist": ["https://ehr.example.org/fhir/R4"]},
        },
        "explain": {"existingSecret": "ecmo-explain-keys"},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "apiKeys": {"existingSecret": "ecmo-api-keys"},
        "networkPolicy": {
            "allowedNamespaces": ["ingress-nginx", "monitoring"],
            "allowSameNamespace": False,
        },
    },
    "models from a volume source": {
        **EHR_TRUST,
        "models": {
            "volume": {
                "enabled": True,
                "volume": {"nfs": {"server": "nfs.example.org", "path": "/exports/models"}},
            }
        },
        "podDisruptionBudget": {"enabled": False},
    },
    "no dashboard": {**EHR_TRUST, "metrics": {"grafanaDashboard": {"enabled": False}}},
}
# Each must be refused, by the schema or by a template `fail`.
BAD: dict[str, dict[str, Any]] = {
    "grace margin 0": {"lifecycle": {"terminationMarginSeconds": 0}},
    "both PDB fields": {"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}},
    "models volume without source": {"models": {"volume": {"enabled": True}}},
    "models volume with two sources": {
        "models": {"volume": {"enabled": True, "existingClaim": "x", "volume": {"emptyDir": {}}}}
    },
    "workers 0": {"gunicorn": {"workers": 0}},
    "allowPrivilegeEscalation true": {"securityContext": {"allowPrivilegeEscalation": True}},
    "log level verbose": {"config": {"logLevel": "VERBOSE"}},
    "defaults alone (JWT on, no EHR named)": {},
    "JWT on without the audience": {"config": {"cds": EHR_TRUST["config"]["cds"]}},
    "JWT on without a key source": {
        "config": {
            "publicBaseUrl": "https://cds.example.org",
            "cds": {"allowedIssuers": ["https://x.example"]},
        }
    },
    "network policy namespace not a name": {"networkPolicy": {"allowedNamespaces": ["Not A Name"]}},
    "FHIR server over plain http": {
        **EHR_TRUST,
        "config": {**EHR_TRUST["config"], "fhir": {"serverAllowlist": ["http://ehr.example.org"]}},
    },
    "FHIR deadline not below the worker timeout": {
        **EHR_TRUST,
        "config": {**EHR_TRUST["config"], "fhir": {"deadlineSeconds": 30}},
    },
    "dashboard label not a string": {
        **EHR_TRUST,
        "metrics": {"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}},
    },
}


# ECMO_* settings service/config.py reads that the chart deliberately does not offer, and why.
NOT_IN_CHART = {
    "ECMO_FHIR_ALLOW_HTTP": "plain-http FHIR servers are for tests only",
    "ECMO_RUN_DIR": "its default (under /tmp, an emptyDir) is right in a pod",
    "ECMO_CDS_REPLAY_DIR": "its default (under the metrics emptyDir, shared by the pod's workers)",
}


def env_names(objects: list[dict[str, Any]]) -> set[str]:
    """The env names the Deployment's container gets, literal or from a Secret."""
    return {
        e["name"]
        for obj in objects
        if obj["kind"] == "Deployment"
        for c in obj["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 2:
        print("usage: lint_deploy.py CHART_DIR SERVICE_CONFIG_PY", file=sys.stderr)
        return 2
    chart = Chart.read(Path(args[0]), Path(args[1]))
    failed = False
    rendered: set[str] = set()
    for name, override in GOOD.items():
        values = merged(chart.defaults, override)
        findings = schema_errors(chart, values) + lint(chart, values)
        objects: list[dict[str, Any]] = []
        if not findings:
            try:
                objects = render(chart, override)
                rendered |= env_names(objects)
                findings += check_objects(chart, values, objects)
            except Exception as exc:  # any failure to render is a finding
                findings.append(f"render: {exc}")
        status = f"ok ({len(objects)} objects valid)" if not findings else "FAILED"
        print(f"helm lint + render [{name}]: {status}")
        for finding in findings:
            print(f"  {finding}")
        failed |= bool(findings)

    # Every setting the service reads can be set from the chart's values (or is listed above).
    unsettable = sorted(chart.ecmo_names - rendered - set(NOT_IN_CHART))
    print(f"every ECMO_* setting has a value: {'ok' if not unsettable else 'FAILED'}")
    if unsettable:
        print(f"  no value set renders {unsettable}: add them to values.yaml or NOT_IN_CHART")
    failed |= bool(unsettable)

    for name, override in BAD.items():
        values = merged(chart.defaults, override)
        # Helm itself must refuse (it validates values.schema.json, as `helm install` does).
        helm_findings = lint(chart, values)
        print(f"refuses [{name}]: {'ok' if helm_findings else 'FAILED: accepted by helm lint'}")
        for finding in schema_errors(chart, values) or helm_findings:
            print(f"  ({finding[:160]})")
        failed |= not helm_findings

    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

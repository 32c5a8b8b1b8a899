"""The Helm chart deploy/helm/kine-py: its YAML, its values schema, Helm's lint, and the
manifests Helm renders for each mode.

Helm runs in-process through helm-sdkpy (Helm's Go library as libhelm_sdkpy.so):
``Lint`` for lint, and ``Install`` against a loopback stub of the Kubernetes API
(tests/deploy/kube_stub.py) for rendering, because helm-sdkpy has no ``template`` action.
Each mode is one values file in the chart's ci/ folder (the chart-testing convention),
merged over values.yaml as Helm merges ``-f``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kine_py.cli import parse_config
from tests.deploy.kube_stub import KubeStub
from tests.deploy.support import CHART, DEPLOY, flag_name, require

RELEASE = "kp"
NAMESPACE = "kine"
FULLNAME = "kp-kine-py"
MODE_FILES = sorted((CHART / "ci").glob("*.yaml"))
MODES = ["defaults"] + [p.name.removesuffix("-values.yaml") for p in MODE_FILES]
# Helm's lint severities (helm.sh/helm/v4/pkg/chart/v2/lint/support).
LINT_INFO, LINT_WARNING, LINT_ERROR = 1, 2, 3


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def mode_overrides(mode: str) -> dict[str, Any]:
    return {} if mode == "defaults" else load_yaml(CHART / "ci" / f"{mode}-values.yaml")


def mode_values(mode: str) -> dict[str, Any]:
    return merge(load_yaml(CHART / "values.yaml"), mode_overrides(mode))


# -- YAML and schema ---------------------------------------------------------------------


def plain_yaml_files() -> list[Path]:
    """Every YAML file under deploy/ except Go templates (templates/ holds those)."""
    return sorted(
        p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and "templates" not in p.parts
    )


def test_every_plain_yaml_file_parses() -> None:
    files = plain_yaml_files()
    assert {CHART / "Chart.yaml", CHART / "values.yaml", *MODE_FILES} <= set(files)
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents and all(isinstance(d, dict) for d in documents), path


def test_yaml_is_indented_by_two_spaces() -> None:
    for path in [*plain_yaml_files(), *(CHART / "templates").glob("*.yaml")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            indent = len(line) - len(line.lstrip(" "))
            assert "\t" not in line[: indent + 1], f"{path}:{number}: tab"
            assert indent % 2 == 0, f"{path}:{number}: indent of {indent}"


def test_chart_yaml() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == CHART.name
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])


@pytest.fixture(scope="module")
def validator() -> Any:
    try:
        import jsonschema
    except ImportError:
        require("the jsonschema package is not installed (pip install jsonschema)")
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("mode", MODES)
def test_values_validate_against_the_schema(validator: Any, mode: str) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(mode_values(mode))]
    assert errors == []


def test_every_mode_has_a_values_file() -> None:
    modes = {mode_values(m)["mode"] for m in MODES}
    assert modes == {"sqlite", "external", "raft"}


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"mode": "etcd"}, "is not one of"),
        ({"mode": "external"}, "is not valid under any of the given schemas"),  # no DSN, no Secret
        ({"mode": "external", "externalDatabase": {"dsn": "sqlite:///x"}}, "does not match"),
        ({"tls": {"enabled": True}}, "non-empty|too short"),
        ({"raft": {"replicas": 4}}, "is not one of"),
        ({"raft": {"replicas": 7}}, "is not one of"),
        ({"raft": {"initialClusterState": "join"}}, "is not one of"),
        ({"raft": {"peerPort": 2379}}, "should not be valid"),
        ({"raft": {"peerTLS": {"enabled": True}}}, "non-empty|too short"),
        ({"raft": {"podAntiAffinity": "always"}}, "is not one of"),
        ({"raft": {"listenPeerUrls": "http://x:1"}}, "Additional properties"),
        ({"mode": "raft", "persistence": {"accessModes": ["ReadWriteMany"]}}, "should not be valid"),
        ({"extraArgs": ["debug"]}, "does not match"),
        ({"persistance": {}}, "Additional properties"),
        ({"metrics": {"port": 2379}}, "should not be valid"),
        ({"externalDatabase": {"maxOpenConnections": 1}}, "less than the minimum"),
    ],
)
def test_schema_rejects(validator: Any, override: dict[str, Any], complaint: str) -> None:
    messages = [e.message for e in validator.iter_errors(merge(mode_values("defaults"), override))]
    assert any(re.search(complaint, m) for m in messages), messages


def test_templates_use_only_defined_values() -> None:
    """Every ``.Values.a.b`` a template reads is a key path of values.yaml."""
    values = mode_values("defaults")
    for path in (CHART / "templates").iterdir():
        for match in re.finditer(r"\.Values((?:\.\w+)+)", path.read_text()):
            node: Any = values
            for key in match.group(1).split(".")[1:]:
                assert isinstance(node, dict) and key in node, f"{path.name}: .Values{match.group(1)}"
                node = node[key]


# -- Helm, through helm-sdkpy ------------------------------------------------------------


class Helm:
    """Helm's lint and install actions, in-process, installing into a stub API server."""

    def __init__(self, helm_sdkpy: Any, kube: KubeStub) -> None:
        self.sdk = helm_sdkpy
        self.kube = kube
        self.config = helm_sdkpy.Configuration(namespace=NAMESPACE, kubeconfig=kube.kubeconfig)

    def lint(self, chart: Path) -> dict[str, Any]:
        result: dict[str, Any] = asyncio.run(self.sdk.Lint(self.config).run(str(chart)))
        return result

    def install(self, values: dict[str, Any], skip_schema_validation: bool = False) -> dict[str, Any]:
        install = self.sdk.Install(self.config)
        result: dict[str, Any] = asyncio.run(
            install.run(
                RELEASE,
                str(CHART),
                values=values,
                wait=False,
                timeout=30,
                skip_schema_validation=skip_schema_validation,
            )
        )
        return result


@pytest.fixture(scope="module")
def helm() -> Iterator[Helm]:
    try:
        import helm_sdkpy
    except ImportError:
        require(
            "helm-sdkpy is not installed; it declares Python >= 3.12, so on 3.11: "
            "pip install --ignore-requires-python helm-sdkpy"
        )
    with KubeStub() as kube:
        yield Helm(helm_sdkpy, kube)


@pytest.mark.parametrize("mode", MODES)
def test_helm_lint(helm: Helm, mode: str, tmp_path: Path) -> None:
    """``helm lint`` with the mode's values (helm-sdkpy's Lint reads the chart's own
    values.yaml only, so a copy of the chart gets the merged values as its values.yaml)."""
    assert_lints_clean(helm, mode_values(mode), tmp_path, mode)


def assert_lints_clean(helm: Helm, values: dict[str, Any], tmp_path: Path, what: str) -> None:
    chart = tmp_path / CHART.name
    shutil.copytree(CHART, chart)
    (chart / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    result = helm.lint(chart)
    assert result["TotalChartsLinted"] == 1
    # helm-sdkpy serialises Go errors as {}, so only the severity and the file are known;
    # `helm lint` or test_render below say what is wrong.
    problems = [m for m in result["Messages"] if m["Severity"] >= LINT_WARNING]
    assert problems == [], f"helm lint ({what}): {problems}; errors: {result['Errors']}"


def test_helm_lint_finds_errors(helm: Helm, tmp_path: Path) -> None:
    """The lint above would notice: a bad value and a template that does not render."""
    chart = tmp_path / CHART.name
    shutil.copytree(CHART, chart)
    (chart / "values.yaml").write_text(yaml.safe_dump(merge(mode_values("defaults"), {"mode": "etcd"})))
    with (chart / "templates" / "service.yaml").open("a") as template:
        template.write("{{ .Values.missing.field }}\n")
    result = helm.lint(chart)
    errors = {m["Path"] for m in result["Messages"] if m["Severity"] == LINT_ERROR}
    assert errors == {"values.yaml", "templates/"}


def render(helm: Helm, mode: str) -> tuple[list[dict[str, Any]], str]:
    """(manifests, NOTES.txt) as Helm installs them for the mode."""
    release = helm.install(mode_overrides(mode))
    manifests = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    return manifests, release["info"]["notes"]


@pytest.fixture(scope="module")
def rendered(helm: Helm) -> dict[str, tuple[list[dict[str, Any]], str]]:
    return {mode: render(helm, mode) for mode in MODES}


def identity(manifest: dict[str, Any]) -> tuple[str, str]:
    return manifest["kind"], manifest["metadata"]["name"]


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for manifest in manifests:
        kinds.setdefault(manifest["kind"], []).append(manifest)
    return kinds


def workload(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] in ("StatefulSet", "Deployment")]
    return found


def container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload(manifests)["spec"]["template"]["spec"]["containers"]
    (found,) = containers
    return found


def env(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(manifests)["env"]}


EXPECTED_KINDS = {
    "defaults": {"ServiceAccount": 1, "Service": 2, "StatefulSet": 1},
    "sqlite": {"ServiceAccount": 1, "Service": 2, "StatefulSet": 1, "ServiceMonitor": 1},
    "external": {"ServiceAccount": 1, "Service": 1, "Secret": 1, "Deployment": 1, "PodDisruptionBudget": 1},
    "external-secret": {"ServiceAccount": 1, "Service": 1, "Deployment": 1},
    "raft": {"ServiceAccount": 1, "Service": 2, "StatefulSet": 1, "PodDisruptionBudget": 1},
    "raft-peer-tls": {"ServiceAccount": 1, "Service": 2, "StatefulSet": 1, "PodDisruptionBudget": 1},
}


def test_expectations_cover_every_mode_file() -> None:
    assert set(EXPECTED_KINDS) == set(MODES)


@pytest.mark.parametrize("mode", MODES)
def test_render_kinds(rendered: dict[str, tuple[list[dict[str, Any]], str]], mode: str) -> None:
    manifests, _ = rendered[mode]
    assert {k: len(v) for k, v in by_kind(manifests).items()} == EXPECTED_KINDS[mode]
    for manifest in manifests:
        assert manifest["metadata"]["name"].startswith(FULLNAME)
        assert manifest["metadata"]["labels"]["kine-py/mode"] == mode_values(mode)["mode"]


@pytest.mark.parametrize("mode", MODES)
def test_render_pod_is_locked_down(rendered: dict[str, tuple[list[dict[str, Any]], str]], mode: str) -> None:
    manifests, _ = rendered[mode]
    pod = workload(manifests)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    security = container(manifests)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # A read-only root needs a writable /tmp.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(manifests)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container(manifests)["resources"]["requests"]


@pytest.mark.parametrize("mode", MODES)
def test_render_probes_and_ports(rendered: dict[str, tuple[list[dict[str, Any]], str]], mode: str) -> None:
    manifests, _ = rendered[mode]
    main = container(manifests)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports["client"] == 2379
    assert ports["metrics"] == 8080
    probes = {name: main[name]["httpGet"] for name in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert all(ports[p["port"]] == 8080 for p in probes.values())
    assert "--metrics-bind-address=0.0.0.0:8080" in main["args"]
    service = next(s for s in by_kind(manifests)["Service"] if s["metadata"]["name"] == FULLNAME)
    assert {(p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        (2379, "client"),
        (8080, "metrics"),
    }
    pod_labels = workload(manifests)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert workload(manifests)["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize("mode", MODES)
def test_render_args_are_kine_py_flags(
    rendered: dict[str, tuple[list[dict[str, Any]], str]],
    mode: str,
    kine_flags: set[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every argument is a flag of ``kine-py --help``, and kine-py's own parser accepts the
    whole command line with the pod's environment (Kubernetes expands ``$(POD_NAME)``)."""
    manifests, _ = rendered[mode]
    main = container(manifests)
    args = [a.replace("$(POD_NAME)", f"{FULLNAME}-0") for a in main["args"]]
    assert all(a.startswith("--") for a in args), args
    unknown = {flag_name(a) for a in args} - kine_flags
    assert unknown == set(), f"not flags of kine-py: {sorted(unknown)}"
    for name, entry in env(manifests).items():
        if name.startswith("KINE_"):
            monkeypatch.setenv(name, entry.get("value", "postgres://from-a-secret/db"))
    config = parse_config(args)
    assert config.listen_address == "0.0.0.0:2379"
    assert config.name == f"{FULLNAME}-0"


def test_render_defaults_sqlite(rendered: dict[str, tuple[list[dict[str, Any]], str]]) -> None:
    manifests, notes = rendered["defaults"]
    sts = workload(manifests)
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == f"{FULLNAME}-headless"
    args = container(manifests)["args"]
    assert "--endpoint=sqlite:///var/lib/kine-py/state.db" in args
    assert not any(a.startswith(("--server-cert-file", "--trusted-ca-file")) for a in args)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    mounts = {m["name"]: m["mountPath"] for m in container(manifests)["volumeMounts"]}
    assert mounts["data"] == "/var/lib/kine-py"
    assert "KINE_ENDPOINT" not in env(manifests)
    assert "no TLS and no authentication" in notes


def test_render_sqlite_with_tls_and_service_monitor(
    rendered: dict[str, tuple[list[dict[str, Any]], str]],
) -> None:
    manifests, notes = rendered["sqlite"]
    args = container(manifests)["args"]
    for flag in (
        "--server-cert-file=/etc/kine-py/tls/tls.crt",
        "--server-key-file=/etc/kine-py/tls/tls.key",
        "--trusted-ca-file=/etc/kine-py/tls/ca.crt",
    ):
        assert flag in args
    pod = workload(manifests)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "kine-py-tls"
    mounts = {m["name"]: m for m in container(manifests)["volumeMounts"]}
    assert mounts["tls"]["mountPath"] == "/etc/kine-py/tls"
    assert mounts["tls"]["readOnly"] is True
    (claim,) = workload(manifests)["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "standard"
    (monitor,) = by_kind(manifests)["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert f"https://{FULLNAME}.{NAMESPACE}.svc:2379" in notes


def test_render_external_with_dsn(rendered: dict[str, tuple[list[dict[str, Any]], str]]) -> None:
    manifests, _ = rendered["external"]
    values = mode_values("external")
    deployment = workload(manifests)
    assert deployment["spec"]["replicas"] == 3
    (secret,) = by_kind(manifests)["Secret"]
    assert secret["stringData"] == {"dsn": values["externalDatabase"]["dsn"]}
    reference = env(manifests)["KINE_ENDPOINT"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": secret["metadata"]["name"], "key": "dsn"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/dsn"])
    assert annotations["example.com/team"] == "storage"
    args = container(manifests)["args"]
    assert not any(a.startswith("--endpoint") for a in args), "the DSN must not show in the pod spec"
    assert values["externalDatabase"]["dsn"] not in json.dumps(deployment)
    assert "--ca-file=/etc/kine-py/db-tls/ca.crt" in args
    assert not any(a.startswith(("--cert-file", "--key-file")) for a in args)
    assert "--datastore-max-open-connections=4" in args
    assert "--poll-interval=100ms" in args
    assert "--watch-progress-notify-interval=10s" in args
    mounts = {m["name"]: m["mountPath"] for m in container(manifests)["volumeMounts"]}
    assert "data" not in mounts
    assert mounts["db-tls"] == "/etc/kine-py/db-tls"
    (budget,) = by_kind(manifests)["PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1


def test_render_external_with_existing_secret(rendered: dict[str, tuple[list[dict[str, Any]], str]]) -> None:
    manifests, notes = rendered["external-secret"]
    assert workload(manifests)["spec"]["replicas"] == 2
    reference = env(manifests)["KINE_ENDPOINT"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": "kine-py-mysql", "key": "url"}
    args = container(manifests)["args"]
    for flag in (
        "--cert-file=/etc/kine-py/db-tls/tls.crt",
        "--key-file=/etc/kine-py/db-tls/tls.key",
        "--debug",
        "--log-format=plain",
        "--max-request-bytes=4194304",  # an integer, not Go's 4.194304e+06
        "--poll-interval=250ms",
    ):
        assert flag in args
    assert "annotations" not in workload(manifests)["spec"]["template"]["metadata"]
    assert "Secret kine-py-mysql (key url)" in notes


HEADLESS = f"{FULLNAME}-headless"


def member_host(pod: str) -> str:
    return f"{pod}.{HEADLESS}.{NAMESPACE}.svc"


def initial_cluster(replicas: int, scheme: str = "http", port: int = 2380) -> str:
    pods = [f"{FULLNAME}-{i}" for i in range(replicas)]
    return ",".join(f"{pod}={scheme}://{member_host(pod)}:{port}" for pod in pods)


PEER_TLS_FLAGS = [
    "--peer-cert-file=/etc/kine-py/peer-tls/tls.crt",
    "--peer-key-file=/etc/kine-py/peer-tls/tls.key",
    "--peer-trusted-ca-file=/etc/kine-py/peer-tls/ca.crt",
]
RAFT_SHAPES = [(3, False), (3, True), (5, False), (5, True)]


def raft_overrides(replicas: int, peer_tls: bool) -> dict[str, Any]:
    raft: dict[str, Any] = {"replicas": replicas}
    if peer_tls:
        raft["peerTLS"] = {"enabled": True, "secretName": "kine-py-peer"}
    return {"mode": "raft", "raft": raft}


@pytest.mark.parametrize(("replicas", "peer_tls"), RAFT_SHAPES)
def test_helm_lint_raft(helm: Helm, replicas: int, peer_tls: bool, tmp_path: Path) -> None:
    values = merge(mode_values("defaults"), raft_overrides(replicas, peer_tls))
    assert_lints_clean(helm, values, tmp_path, f"raft, {replicas} members, peer TLS {peer_tls}")


@pytest.fixture(scope="module")
def raft_rendered(helm: Helm) -> dict[tuple[int, bool], tuple[list[dict[str, Any]], str]]:
    renders = {}
    for replicas, peer_tls in RAFT_SHAPES:
        release = helm.install(raft_overrides(replicas, peer_tls))
        manifests = [d for d in yaml.safe_load_all(release["manifest"]) if d]
        renders[(replicas, peer_tls)] = (manifests, release["info"]["notes"])
    return renders


def headless_service(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [s for s in by_kind(manifests)["Service"] if s["spec"].get("clusterIP") == "None"]
    return found


def server_node_config(args: list[str], pod: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What kine-py itself makes of the pod's command line in raft mode: its parser, then the
    Raft node's configuration (which checks the URLs and the flags' consistency)."""
    from kine_py.backends import Endpoint
    from kine_py.replication.setup import node_config

    for name in [n for n in os.environ if n.startswith("KINE_")]:
        monkeypatch.delenv(name)
    config = parse_config([a.replace("$(POD_NAME)", pod) for a in args])
    endpoint = Endpoint.parse(config.endpoint)
    assert endpoint.scheme == "raft"
    return node_config(config, endpoint.rest)


@pytest.mark.parametrize(("replicas", "peer_tls"), RAFT_SHAPES)
def test_render_raft(
    raft_rendered: dict[tuple[int, bool], tuple[list[dict[str, Any]], str]],
    replicas: int,
    peer_tls: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifests, notes = raft_rendered[(replicas, peer_tls)]
    assert {k: len(v) for k, v in by_kind(manifests).items()} == EXPECTED_KINDS["raft"]
    sts = workload(manifests)
    assert sts["kind"] == "StatefulSet"
    assert sts["spec"]["replicas"] == replicas
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    main = container(manifests)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]

    # The server's flags, every member in --initial-cluster.
    scheme = "https" if peer_tls else "http"
    args = main["args"]
    expected = [
        "--name=$(POD_NAME)",
        "--endpoint=raft:///var/lib/kine-py/raft",
        f"--initial-cluster={initial_cluster(replicas, scheme)}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={FULLNAME}",
        f"--listen-peer-urls={scheme}://0.0.0.0:2380",
        f"--initial-advertise-peer-urls={scheme}://{member_host('$(POD_NAME)')}:2380",
        f"--advertise-client-urls=http://{member_host('$(POD_NAME)')}:2379",
        "--heartbeat-interval=100",
        "--election-timeout=1000",
        "--snapshot-count=10000",
    ]
    missing = [flag for flag in expected if flag not in args]
    assert missing == [], args
    assert len({flag_name(a) for a in args}) == len(args), "a flag given twice"
    assert not any("raft+sqlite" in a or "state.db" in a for a in args)
    assert [a for a in args if a.startswith("--peer-")] == (PEER_TLS_FLAGS if peer_tls else [])

    # The pod's environment: POD_NAME for $(POD_NAME), no invented variables.
    names = set(env(manifests))
    assert names == {"POD_NAME"}
    assert env(manifests)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "KINE_RAFT" not in json.dumps(sts)

    # Peer port, probes on the metrics port, the data volume, the peer certificates.
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"client": 2379, "metrics": 8080, "peer": 2380}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["data"]["mountPath"] == "/var/lib/kine-py"
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert "data" not in volumes  # the claim template provides it
    if peer_tls:
        assert mounts["peer-tls"] == {
            "name": "peer-tls",
            "mountPath": "/etc/kine-py/peer-tls",
            "readOnly": True,
        }
        assert volumes["peer-tls"]["secret"]["secretName"] == "kine-py-peer"
    else:
        assert "peer-tls" not in mounts and "peer-tls" not in volumes

    # Members spread over nodes (soft by default).
    (spread,) = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert spread["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert spread["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()

    # The headless Service: peer port, names published before the pods are ready.
    headless = headless_service(manifests)
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"] == HEADLESS
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]} == {"client": 2379, "peer": 2380}
    assert {p["name"]: p["targetPort"] for p in headless["spec"]["ports"]} == {
        "client": "client",
        "peer": "peer",
    }
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"].items() <= pod_labels.items()

    # One member down at a time.
    (budget,) = by_kind(manifests)["PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    # kine-py accepts each member's command line, and each finds itself in the cluster.
    for i in range(replicas):
        pod = f"{FULLNAME}-{i}"
        node = server_node_config(args, pod, monkeypatch)
        assert node.name == pod
        assert [m.name for m in node.initial_cluster] == [f"{FULLNAME}-{j}" for j in range(replicas)]
        (me,) = [m for m in node.initial_cluster if m.name == pod]
        assert me.peer_urls == node.advertise_peer_urls == (f"{scheme}://{member_host(pod)}:2380",)
        assert node.listen_peer_urls == (f"{scheme}://0.0.0.0:2380",)
        assert node.client_urls == (f"http://{member_host(pod)}:2379",)
        assert str(node.data_dir) == "/var/lib/kine-py/raft"
        assert node.cluster_state == "new"
        assert node.token == FULLNAME
        assert node.snapshot_count == 10000
        assert node.tick_seconds == pytest.approx(0.1)
        assert node.election_ticks == 10
        assert (node.tls is not None) is peer_tls

    # NOTES: how to look at the cluster.
    endpoints = ",".join(f"http://{member_host(f'{FULLNAME}-{i}')}:2379" for i in range(replicas))
    assert f"etcdctl --endpoints={endpoints} endpoint status -w table" in notes
    assert f"etcdctl --endpoints={endpoints} member list -w table" in notes
    assert "PLANNED" not in notes


def test_render_raft_values_file(
    rendered: dict[str, tuple[list[dict[str, Any]], str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ci/raft-peer-tls-values.yaml: every raft value changed from its default."""
    manifests, notes = rendered["raft-peer-tls"]
    sts = workload(manifests)
    assert sts["spec"]["replicas"] == 5
    args = container(manifests)["args"]
    for flag in (
        f"--initial-cluster={initial_cluster(5, 'https', 12380)}",
        "--initial-cluster-token=kine-prod",
        "--listen-peer-urls=https://0.0.0.0:12380",
        f"--initial-advertise-peer-urls=https://{member_host('$(POD_NAME)')}:12380",
        f"--advertise-client-urls=https://{member_host('$(POD_NAME)')}:2379",
        "--heartbeat-interval=200",
        "--election-timeout=2000",
        "--snapshot-count=50000",  # an integer, not Go's 5e+04
        "--server-cert-file=/etc/kine-py/tls/tls.crt",
        *PEER_TLS_FLAGS,
    ):
        assert flag in args
    ports = {p["name"]: p["containerPort"] for p in container(manifests)["ports"]}
    assert ports["peer"] == 12380
    assert {p["name"]: p["port"] for p in headless_service(manifests)["spec"]["ports"]}["peer"] == 12380
    (spread,) = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    node = server_node_config(args, f"{FULLNAME}-3", monkeypatch)
    assert node.election_ticks == 10
    assert node.tick_seconds == pytest.approx(0.2)
    assert "mutual TLS from Secret kine-py-peer-tls" in notes
    assert f"https://{member_host(f'{FULLNAME}-4')}:2379 endpoint status -w table" in notes


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ({"raft": {"replicas": 1}}, "single"),
        ({"raft": {"initialClusterState": "existing"}}, "existing"),
        ({"persistence": {"enabled": False}}, "ephemeral"),
        ({"raft": {"podAntiAffinity": "none"}}, "no-spread"),
        ({"affinity": {"nodeAffinity": {"x": "y"}}}, "own-affinity"),
        ({"podDisruptionBudget": {"enabled": False, "maxUnavailable": 3}}, "budget"),
    ],
)
def test_render_raft_variants(helm: Helm, override: dict[str, Any], check: str) -> None:
    release = helm.install(merge({"mode": "raft"}, override))
    manifests = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    notes = release["info"]["notes"]
    sts = workload(manifests)
    args = container(manifests)["args"]
    pod = sts["spec"]["template"]["spec"]
    budgets = by_kind(manifests).get("PodDisruptionBudget", [])
    if check == "single":
        assert sts["spec"]["replicas"] == 1
        assert f"--initial-cluster={initial_cluster(1)}" in args
        assert budgets == []  # nothing to keep up through a drain
    elif check == "existing":
        assert "--initial-cluster-state=existing" in args
        assert f"--initial-cluster={initial_cluster(3)}" in args
    elif check == "ephemeral":
        assert "volumeClaimTemplates" not in sts["spec"]
        assert {v["name"]: v for v in pod["volumes"]}["data"] == {"name": "data", "emptyDir": {}}
        assert "A MEMBER'S DATA IS LOST WITH ITS POD" in notes
    elif check == "no-spread":
        assert "affinity" not in pod
    elif check == "own-affinity":
        assert pod["affinity"] == {"nodeAffinity": {"x": "y"}}
    elif check == "budget":
        (budget,) = budgets
        assert budget["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize(
    ("override", "schema_says", "template_says"),
    [
        (
            {"mode": "external"},
            "/externalDatabase/dsn': minLength",
            "mode external needs externalDatabase.dsn or externalDatabase.existingSecret",
        ),
        ({"tls": {"enabled": True}}, "/tls/secretName': minLength", "tls.enabled needs tls.secretName"),
        (
            {"mode": "external", "externalDatabase": {"dsn": "postgres://x/y", "tls": {"enabled": True}}},
            "/externalDatabase/tls/secretName': minLength",
            "externalDatabase.tls.enabled needs externalDatabase.tls.secretName",
        ),
        (
            {"mode": "raft", "raft": {"peerTLS": {"enabled": True}}},
            "/raft/peerTLS/secretName': minLength",
            "raft.peerTLS.enabled needs raft.peerTLS.secretName",
        ),
        (
            {"mode": "raft", "raft": {"peerPort": 2379}},
            "/raft/peerPort': 'not' failed",
            "raft.peerPort must differ from the client port 2379 and from metrics.port",
        ),
    ],
)
def test_render_refuses_bad_values(
    helm: Helm, override: dict[str, Any], schema_says: str, template_says: str
) -> None:
    """Helm applies values.schema.json; the templates check again when it is skipped."""
    with pytest.raises(helm.sdk.InstallError, match=re.escape(schema_says)):
        helm.install(override)
    with pytest.raises(helm.sdk.InstallError, match=re.escape(template_says)):
        helm.install(override, skip_schema_validation=True)


@pytest.mark.parametrize(
    ("raft", "complaint"),
    [
        (
            {"heartbeatInterval": 300, "electionTimeout": 1000},
            "raft.electionTimeout must be at least 5 times",
        ),
        ({"peerPort": 8080}, "raft.peerPort must differ from the client port 2379 and from metrics.port"),
    ],
)
def test_render_refuses_bad_raft_timing_and_ports(helm: Helm, raft: dict[str, Any], complaint: str) -> None:
    """What the schema cannot say: kine-py refuses these too (--election-timeout < 5 x
    --heartbeat-interval), or the ports would collide."""
    with pytest.raises(helm.sdk.InstallError, match=re.escape(complaint)):
        helm.install({"mode": "raft", "raft": raft})


def test_render_with_the_helm_binary_when_there_is_one(
    rendered: dict[str, tuple[list[dict[str, Any]], str]], tmp_path: Path
) -> None:
    """Where a ``helm`` binary is on PATH, ``helm lint`` and ``helm template`` must agree
    with the in-process Helm. (There is none on the project's machines; the checks above
    do not depend on it, and this test then checks only the in-process renders exist.)"""
    assert set(rendered) == set(MODES)
    binary = shutil.which("helm")
    if binary is None:
        return
    for mode in MODES:
        values = tmp_path / f"{mode}.yaml"
        values.write_text(yaml.safe_dump(mode_overrides(mode)))
        subprocess.run([binary, "lint", str(CHART), "-f", str(values)], check=True, capture_output=True)
        done = subprocess.run(
            [binary, "template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values)],
            check=True,
            capture_output=True,
            text=True,
        )
        from_binary = [d for d in yaml.safe_load_all(done.stdout) if d]
        assert sorted(map(identity, from_binary)) == sorted(map(identity, rendered[mode][0])), mode
        assert container(from_binary)["args"] == container(rendered[mode][0])["args"], mode

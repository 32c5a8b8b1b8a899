"""A stand-in Kubernetes API server on loopback, just enough for Helm's install action.

helm-sdkpy exposes Helm's lint, install and upgrade but not ``helm template``; its install
has no dry-run option either. So the chart is rendered by a real Helm install against this
stub: discovery answers the API groups the chart uses, every object is absent (GET → 404,
lists empty), and every create or update is answered with the object sent (JSON or
protobuf alike). Helm's install result then holds the manifest exactly as Helm rendered
it. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

KUBE_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}

# group/version -> [(plural, kind, namespaced)]
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("namespaces", "Namespace", False),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
        ("pods", "Pod", True),
        ("secrets", "Secret", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
    ],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor", True)],
}
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _discovery(path: str) -> dict[str, Any] | None:
    if path == "/version":
        return KUBE_VERSION
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        groups = []
        for group_version in RESOURCES:
            if "/" not in group_version:
                continue
            group, version = group_version.split("/")
            entry = {"groupVersion": group_version, "version": version}
            groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    for group_version, resources in RESOURCES.items():
        if path == ("/api/v1" if group_version == "v1" else f"/apis/{group_version}"):
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": [
                    {
                        "name": plural,
                        "singularName": "",
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": _VERBS,
                    }
                    for plural, kind, namespaced in resources
                ],
            }
    return None


_PLURALS = {plural for resources in RESOURCES.values() for plural, _, _ in resources}


class KubeStub:
    """``with KubeStub() as kube:`` serves on 127.0.0.1:<free port>; ``kube.kubeconfig``
    is a kubeconfig (YAML text) pointing at it."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                found = _discovery(path)
                if found is not None:
                    self._reply(200, json.dumps(found).encode())
                elif path.rstrip("/").rpartition("/")[2] in _PLURALS:
                    items = {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}}
                    self._reply(200, json.dumps({**items, "items": []}).encode())
                else:
                    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
                    self._reply(404, json.dumps({**status, "reason": "NotFound", "code": 404}).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                content_type = self.headers.get("Content-Type", "application/json")
                self._reply(201 if self.command == "POST" else 200, body, content_type)

            do_PUT = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="kube-stub", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def kubeconfig(self) -> str:
        return f"""\
apiVersion: v1
kind: Config
clusters:
  - name: stub
    cluster:
      server: {self.url}
contexts:
  - name: stub
    context:
      cluster: stub
      user: stub
current-context: stub
users:
  - name: stub
    user:
      token: not-a-secret
"""

    def __enter__(self) -> KubeStub:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

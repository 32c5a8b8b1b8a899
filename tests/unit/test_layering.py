"""Imports respect the layers: server -> mvcc -> log interface <- backends."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kine_py"


def imports_of(folder: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (PACKAGE / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(PACKAGE))] = names
    return found


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path} imports {name}"
        for path, names in imports_of(folder).items()
        for name in names
        if name.startswith(forbidden)
    ]


def test_grpc_layer_never_imports_a_backend() -> None:
    assert offenders("server", ("kine_py.backends",)) == []


def test_mvcc_knows_neither_grpc_nor_protobuf_nor_backends() -> None:
    assert (
        offenders("mvcc", ("grpc", "google.protobuf", "kine_py._pb", "kine_py.server", "kine_py.backends"))
        == []
    )


def test_backends_do_not_reach_up_into_the_store_or_server() -> None:
    assert offenders("backends", ("kine_py.server", "kine_py.mvcc.store", "grpc")) == []

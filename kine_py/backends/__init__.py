"""Log backends, chosen by the scheme of the ``--endpoint`` DSN.

The registry maps a scheme to "module:function"; the module is imported only
when that scheme is asked for, so an optional database driver is needed only
by those who use it. The function takes the parsed DSN and returns a ``Log``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import parse_qsl, urlsplit

from kine_py.mvcc.log import Log
from kine_py.sqllog.log import QueryObserver

_REGISTRY: dict[str, str] = {
    "sqlite": "kine_py.backends.sqlite:open_log",
    "postgres": "kine_py.backends.postgres:open_log",
    "postgresql": "kine_py.backends.postgres:open_log",
    "mysql": "kine_py.backends.mysql:open_log",
}


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """Settings for database backends (Kine's flag names): TLS files for the database
    connection, connection limits, and how often to poll for other processes' writes."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    max_open_connections: int = 4
    poll_interval: float = 0.1
    observer: QueryObserver | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed ``--endpoint``: ``scheme://rest?params``."""

    scheme: str
    rest: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, dsn: str) -> Endpoint:
        if "://" not in dsn:
            raise ValueError(f"endpoint {dsn!r} has no scheme (expected e.g. sqlite://./db/state.db)")
        scheme, _, rest = dsn.partition("://")
        path, _, query = rest.partition("?")
        return cls(scheme.lower(), path, dict(parse_qsl(query)))

    def redacted(self) -> str:
        """The DSN for logs, with any password masked."""
        parts = urlsplit(f"{self.scheme}://{self.rest}")
        if parts.password:
            return f"{self.scheme}://{self.rest.replace(':' + parts.password + '@', ':***@', 1)}"
        return f"{self.scheme}://{self.rest}"


def schemes() -> list[str]:
    return sorted(_REGISTRY)


def open_log(endpoint: Endpoint, options: BackendOptions | None = None) -> Log:
    """Build the log for ``endpoint``; ValueError for an unknown scheme, ImportError (naming
    the extra to install) when the scheme's driver is missing."""
    target = _REGISTRY.get(endpoint.scheme)
    if target is None:
        raise ValueError(
            f"unsupported endpoint scheme {endpoint.scheme!r}; supported: {', '.join(schemes())}"
        )
    module_name, _, func_name = target.partition(":")
    factory = cast(
        Callable[[Endpoint, BackendOptions], Log], getattr(importlib.import_module(module_name), func_name)
    )
    return factory(endpoint, options or BackendOptions())

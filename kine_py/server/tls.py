"""TLS for the etcd endpoint: server certificate, optional client-certificate verification
(mTLS), and reloading of the files when they change on disk (checked at each handshake)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc

log = logging.getLogger(__name__)


def _mtimes(paths: list[str]) -> tuple[float, ...]:
    return tuple(os.stat(p).st_mtime_ns for p in paths)


def server_credentials(cert_file: str, key_file: str, ca_file: str = "") -> grpc.ServerCredentials:
    """Credentials that present ``cert_file``/``key_file`` and, with ``ca_file``, require a
    client certificate signed by that CA. Rotated files take effect for new connections."""
    paths = [p for p in (cert_file, key_file, ca_file) if p]

    def load() -> grpc.ServerCertificateConfiguration:
        pair = (Path(key_file).read_bytes(), Path(cert_file).read_bytes())
        root = Path(ca_file).read_bytes() if ca_file else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=root)

    seen = {"mtimes": _mtimes(paths)}

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        try:
            mtimes = _mtimes(paths)
            if mtimes == seen["mtimes"]:
                return None
            config = load()
        except OSError as exc:
            log.error("cannot reload TLS files (keeping the old ones): %s", exc)
            return None
        seen["mtimes"] = mtimes
        log.info("reloaded TLS certificate %s", cert_file)
        return config

    # grpc documents None from the fetcher as "no change"; its type stub does not.
    return grpc.dynamic_ssl_server_credentials(
        load(),
        fetch,  # type: ignore[arg-type]
        require_client_authentication=bool(ca_file),
    )

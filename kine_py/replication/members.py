"""Members of a Raft-mode cluster: ids, names and URLs, and etcd's ``--initial-cluster`` syntax.

Ids follow etcd's idea: a member's id is a hash of its peer URLs and the cluster token
(plus the time, for members added later, so an id is never reused); the cluster id is a
hash of the initial members' ids. Every replica of a new cluster computes the same ids
from the same flags.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "name": self.name,
                "peer_urls": list(self.peer_urls),
                "client_urls": list(self.client_urls),
                "is_learner": self.is_learner,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Member:
        raw = json.loads(data)
        return cls(
            int(raw["id"]),
            str(raw["name"]),
            tuple(raw["peer_urls"]),
            tuple(raw.get("client_urls", ())),
            bool(raw.get("is_learner", False)),
        )

    def with_(self, **changes: object) -> Member:
        return replace(self, **changes)  # type: ignore[arg-type]


def _hash64(*parts: str) -> int:
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1) or 1


def member_id(peer_urls: tuple[str, ...], token: str, salt: str = "") -> int:
    return _hash64(token, *sorted(peer_urls), salt)


def cluster_id(ids: list[int], token: str) -> int:
    return _hash64(token, *(str(i) for i in sorted(ids)))


def check_url(url: str) -> str:
    """A peer URL must be http(s)://host:port; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        raise ValueError(f"peer URL {url!r} is not http(s)://host:port")
    return url


def parse_initial_cluster(text: str, token: str) -> list[Member]:
    """``n1=http://a:2380,n2=http://b:2380`` (a name may repeat for several URLs), in order."""
    urls: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--initial-cluster entry {item!r} is not NAME=URL")
        urls.setdefault(name, []).append(check_url(url))
    if not urls:
        raise ValueError("--initial-cluster names no member")
    members = [Member(member_id(tuple(u), token), name, tuple(u)) for name, u in urls.items()]
    if len({m.id for m in members}) != len(members):
        raise ValueError("--initial-cluster lists the same peer URLs twice")
    return members


def host_port(url: str) -> str:
    """``http://h:p`` → ``h:p`` for a gRPC channel or listener."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}"

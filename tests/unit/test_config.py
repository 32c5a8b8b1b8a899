"""Flags, environment variables, listen addresses and DSNs."""

import pytest

from kine_py.backends import Endpoint, open_log
from kine_py.cli import parse_config
from kine_py.config import grpc_address


def test_defaults_serve_loopback_with_sqlite() -> None:
    config = parse_config([])
    assert config.listen_address == "127.0.0.1:2379"
    assert config.endpoint == "sqlite://./db/state.db"


def test_environment_variables_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINE_LISTEN_ADDRESS", "127.0.0.1:3000")
    monkeypatch.setenv("KINE_ENDPOINT", "sqlite:///tmp/x.db")
    config = parse_config([])
    assert (config.listen_address, config.endpoint) == ("127.0.0.1:3000", "sqlite:///tmp/x.db")
    assert parse_config(["--listen-address", "127.0.0.1:4000"]).listen_address == "127.0.0.1:4000"


@pytest.mark.parametrize(
    ("listen", "address", "url"),
    [
        ("127.0.0.1:2379", "127.0.0.1:2379", "http://127.0.0.1:2379"),
        ("http://0.0.0.0:2379", "0.0.0.0:2379", "http://0.0.0.0:2379"),
        (":2379", "127.0.0.1:2379", "http://127.0.0.1:2379"),
        ("unix:///run/kine.sock", "unix:/run/kine.sock", "unix:///run/kine.sock"),
    ],
)
def test_listen_addresses(listen: str, address: str, url: str) -> None:
    assert grpc_address(listen) == (address, url)


def test_bad_listen_address() -> None:
    with pytest.raises(ValueError):
        grpc_address("nonsense")


def test_endpoint_parsing_and_redaction() -> None:
    e = Endpoint.parse("postgres://user:secret@localhost:5432/kine?sslmode=disable")
    assert (e.scheme, e.params) == ("postgres", {"sslmode": "disable"})
    assert "secret" not in e.redacted()
    assert Endpoint.parse("sqlite://./db/state.db").rest == "./db/state.db"
    with pytest.raises(ValueError, match="unsupported endpoint scheme"):
        open_log(Endpoint.parse("nosuch://x"))

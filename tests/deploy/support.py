"""Paths and small helpers shared by the image and chart tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "kine-py"


def require(reason: str) -> None:
    """Skip locally, fail in CI (as tests/conftest.py does for missing servers)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def flag_name(arg: str) -> str:
    """``--name=value`` -> ``--name``."""
    return arg.partition("=")[0]

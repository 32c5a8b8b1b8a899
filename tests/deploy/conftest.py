"""Fixtures for the container image and Helm chart tests (plain unit tests: no server,
no cluster, no Docker engine)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.deploy.support import REPO


@pytest.fixture(scope="session")
def kine_flags() -> set[str]:
    """Every ``--flag`` that ``python -m kine_py --help`` lists."""
    done = subprocess.run(
        [sys.executable, "-m", "kine_py", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=True,
    )
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))
    assert "--listen-address" in flags, done.stdout
    return flags

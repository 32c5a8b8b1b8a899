"""The committed generated code in kine_py/_pb is exactly what proto/ generates today."""

import filecmp
from pathlib import Path

from scripts.genproto import DEFAULT_OUT, generate


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "_pb"
    generate(out)
    committed, fresh = _files(DEFAULT_OUT), _files(out)
    assert committed == fresh, "run `python -m scripts.genproto`: file lists differ"
    stale = [f for f in sorted(fresh) if not filecmp.cmp(out / f, DEFAULT_OUT / f, shallow=False)]
    assert not stale, f"run `python -m scripts.genproto`: stale files {stale}"

"""deploy/Dockerfile, read as Docker reads it (there is no Docker engine here to build it).

The parser below covers what the Dockerfile uses: comments, ``\\`` line continuations,
shell and JSON (exec) forms, ``ARG`` defaults and ``ENV`` values substituted into later
instructions (``$VAR``, ``${VAR}``), stages split at ``FROM``. The checks tie the image to
the project: the console script pyproject.toml declares, the server's real flags (its
``--help``), its real configuration parser, and the Helm chart's user and data path.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pytest
import yaml

from kine_py.backends import Endpoint
from kine_py.cli import parse_config
from tests.deploy.support import CHART, DEPLOY, REPO, flag_name

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"


@dataclass
class Instruction:
    keyword: str
    raw: str  # arguments as written, continuations joined
    line: int
    value: str | list[str] = ""  # JSON form -> list, otherwise the text with variables substituted


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # ARG defaults and ENV, in effect at the end

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


_VAR = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


def substitute(text: str, variables: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        if name in variables:
            return variables[name]
        if default is not None:
            return default
        return match.group(0)  # left for the shell / the runtime (e.g. PATH)

    return _VAR.sub(one, text)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction text) with comments dropped and continuations joined."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        out.append((start, " ".join(p for p in pending if p)))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def _split_key_values(text: str) -> dict[str, str]:
    """``ENV A=1 B="x y"`` / ``ARG A=1`` / ``ARG A`` -> dict."""
    pairs: dict[str, str] = {}
    for token in shlex.split(text):
        key, sep, value = token.partition("=")
        pairs[key] = value if sep else ""
    return pairs


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, body in logical_lines(text):
        keyword, _, raw = body.partition(" ")
        keyword = keyword.upper()
        raw = raw.strip()
        if keyword == "FROM":
            words = substitute(raw, global_args).split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=words[0], name=name))
            continue
        if not stages:
            assert keyword == "ARG", f"line {line}: only ARG may come before the first FROM"
            global_args.update(_split_key_values(raw))
            continue
        stage = stages[-1]
        instruction = Instruction(keyword, raw, line)
        if raw.startswith("[") and keyword in ("CMD", "ENTRYPOINT", "RUN", "VOLUME", "SHELL"):
            instruction.value = json.loads(raw)
        else:
            instruction.value = substitute(raw, stage.variables)
        if keyword == "ARG":
            for key, value in _split_key_values(raw).items():
                stage.variables[key] = value or global_args.get(key, "")
        elif keyword == "ENV":
            stage.variables.update(_split_key_values(substitute(raw, stage.variables)))
        elif keyword == "HEALTHCHECK":
            _, _, rest = raw.partition(" CMD ")
            instruction.value = json.loads(rest.strip()) if rest.strip().startswith("[") else rest
        stage.instructions.append(instruction)
    return global_args, stages


@pytest.fixture(scope="module")
def parsed() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(parsed: tuple[dict[str, str], list[Stage]]) -> Stage:
    return parsed[1][-1]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def exec_form(stage: Stage, keyword: str) -> list[str]:
    value = stage.last(keyword).value
    assert isinstance(value, list), f"{keyword} must use the exec (JSON) form so that signals reach kine-py"
    return value


def test_parser_handles_continuations_comments_and_variables() -> None:
    text = """ARG IMG=base:1
FROM ${IMG} AS one
ARG UID=7
ENV A=x
ENV B=${A}y \\
    # a comment inside a continuation
    C=${UID:-1}
USER ${UID}:${UID}
CMD ["a", "b"]
"""
    global_args, stages = parse_dockerfile(text)
    assert global_args == {"IMG": "base:1"}
    (stage,) = stages
    assert (stage.base, stage.name) == ("base:1", "one")
    assert stage.variables == {"UID": "7", "A": "x", "B": "xy", "C": "7"}
    assert stage.last("USER").value == "7:7"
    assert stage.last("CMD").value == ["a", "b"]


def test_multi_stage_from_python_311_slim(parsed: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = parsed
    assert len(stages) >= 2, "expected a build stage and a final stage"
    assert all(s.base == "python:3.11-slim" for s in stages), [s.base for s in stages]
    build_names = {s.name for s in stages[:-1]}
    copies_from_build = [i for i in stages[-1].all("COPY") if "--from=" in i.raw]
    assert copies_from_build, "the final stage copies nothing from the build stage"
    for copy in copies_from_build:
        source = re.search(r"--from=(\S+)", copy.raw)
        assert source is not None and source.group(1) in build_names


def test_build_stage_builds_a_wheel_with_both_database_extras(
    parsed: tuple[dict[str, str], list[Stage]], pyproject: dict[str, object]
) -> None:
    build = parsed[1][0]
    commands = " ".join(str(i.value) for i in build.all("RUN"))
    assert "pip wheel" in commands
    extras = re.search(r"\[([\w,]+)\]", commands)
    assert extras is not None, "the wheel is not installed with extras"
    project = pyproject["project"]
    assert isinstance(project, dict)
    declared = set(project["optional-dependencies"])
    assert set(extras.group(1).split(",")) == {"postgres", "mysql"} <= declared


def test_final_stage_runs_as_a_fixed_non_root_user(final: Stage) -> None:
    user = final.last("USER").value
    assert isinstance(user, str)
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user!r}: give a numeric non-root uid"
    assert gid.isdigit() and int(gid) != 0, f"USER {user!r}: give a numeric non-root gid"
    # The account exists in the image with that uid/gid.
    setup = " ".join(str(i.value) for i in final.all("RUN"))
    assert f'useradd --system --uid "{uid}" --gid "{gid}"' in setup
    # The instructions after USER run as that user too: nothing may switch back to root.
    users = [i.value for i in final.all("USER")]
    assert users[-1] == user and "root" not in users and "0" not in users


def test_entrypoint_is_the_console_script(final: Stage, pyproject: dict[str, object]) -> None:
    project = pyproject["project"]
    assert isinstance(project, dict)
    assert project["scripts"] == {"kine-py": "kine_py.cli:main"}
    assert exec_form(final, "ENTRYPOINT") == ["kine-py"]
    # The script lives in the venv copied from the build stage, which is first on PATH.
    assert final.variables["PATH"].startswith("/opt/kine-py/bin:")
    assert any("/opt/kine-py" in str(i.value) for i in final.all("COPY"))


def test_every_flag_in_cmd_and_entrypoint_exists(final: Stage, kine_flags: set[str]) -> None:
    args = exec_form(final, "ENTRYPOINT") + exec_form(final, "CMD")
    used = {flag_name(a) for a in args if a.startswith("--")}
    assert used, "CMD passes no flags"
    assert used <= kine_flags, f"not flags of kine-py: {sorted(used - kine_flags)}"


def test_every_kine_variable_in_env_is_a_flag(final: Stage, kine_flags: set[str]) -> None:
    for name in final.variables:
        if name.startswith("KINE_"):
            assert "--" + name[len("KINE_") :].lower().replace("_", "-") in kine_flags, name


def test_default_command_serves_on_all_addresses_with_the_volume(
    final: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image's ENV and CMD, through kine-py's own flag parser."""
    for name, value in final.variables.items():
        if name.startswith("KINE_"):
            monkeypatch.setenv(name, value)
    with_cmd = parse_config(exec_form(final, "CMD"))
    without_cmd = parse_config([])  # `docker run IMAGE` with a CMD of one's own
    for config in (with_cmd, without_cmd):
        assert config.listen_address == "0.0.0.0:2379"
        assert config.metrics_bind_address == "0.0.0.0:8080"
        assert config.endpoint == "sqlite:///var/lib/kine-py/state.db"


def test_volume_holds_the_default_sqlite_database(final: Stage) -> None:
    volumes = final.last("VOLUME").value
    assert isinstance(volumes, list), "VOLUME in JSON form"
    endpoint = Endpoint.parse(final.variables["KINE_ENDPOINT"])
    assert endpoint.scheme == "sqlite"
    database = PurePosixPath(endpoint.rest)
    assert database.is_absolute(), "a relative path would depend on WORKDIR"
    assert volumes == [str(database.parent)]
    assert final.last("WORKDIR").value == str(database.parent)
    # Created in the image, owned by the runtime user, so a fresh volume is writable.
    uid, _, gid = str(final.last("USER").value).partition(":")
    setup = " ".join(str(i.value) for i in final.all("RUN"))
    assert f'install -d -o "{uid}" -g "{gid}" -m 0750 {database.parent}' in setup


def test_exposes_the_etcd_and_metrics_ports(final: Stage) -> None:
    ports = {p.partition("/")[0] for i in final.all("EXPOSE") for p in str(i.value).split()}
    assert {"2379", "8080"} <= ports


def test_healthcheck_asks_healthz_on_the_metrics_port(final: Stage) -> None:
    check = final.last("HEALTHCHECK").value
    assert isinstance(check, list)
    assert "http://127.0.0.1:8080/healthz" in " ".join(check)
    assert check[0] == "python"  # the image has no curl or wget


def test_image_matches_the_chart(final: Stage, pyproject: dict[str, object]) -> None:
    """The chart runs the image as its user, with its data directory and its version."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    uid, _, gid = str(final.last("USER").value).partition(":")
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)
    assert values["podSecurityContext"]["fsGroup"] == int(gid)
    assert values["securityContext"]["runAsUser"] == int(uid)
    project = pyproject["project"]
    assert isinstance(project, dict)
    assert chart["appVersion"] == project["version"] == final.variables["VERSION"]


# -- the build context ------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def test_dockerignore_matcher() -> None:
    patterns = ["*", "!keep/", "**/__pycache__"]
    assert ignored("tests/x.py", patterns)
    assert not ignored("keep/a/b.py", patterns)
    assert ignored("keep/a/__pycache__/b.pyc", patterns)


def test_build_context_holds_what_the_build_copies_and_little_else(
    parsed: tuple[dict[str, str], list[Stage]],
) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources: list[str] = []
    for copy in parsed[1][0].all("COPY"):
        words = [w for w in str(copy.value).split() if not w.startswith("--")]
        sources += words[:-1]
    assert sources, "the build stage copies nothing"
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if "__pycache__" in relative:
                continue
            assert not ignored(relative, patterns), f"{relative} is copied but excluded from the context"
    for unwanted in (".git/HEAD", "tests/conftest.py", "db/state.db", "kine_py/__pycache__/cli.pyc"):
        assert ignored(unwanted, patterns), f"{unwanted} would be sent to the builder"


def test_dockerignore_sits_where_buildkit_looks() -> None:
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile before the context's
    # .dockerignore; the repository root has none of its own.
    assert DOCKERIGNORE.name == DOCKERFILE.name + ".dockerignore"
    assert DOCKERIGNORE.parent == DOCKERFILE.parent

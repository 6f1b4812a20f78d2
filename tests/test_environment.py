"""TrainingEnvironment specs, content hashes, and virtualenv builds that are atomic and cached."""

import dataclasses
import json
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from prefect_mltrain.blocks import TrainingEnvironment
from prefect_mltrain.environments.build import MARKER, build, cached_build, find_python
from prefect_mltrain.errors import EnvironmentBuildError, EnvironmentSpecError

CONDA = """
name: pytorch-env
channels: [conda-forge]
dependencies:
  - python=3.11
  - scikit-learn=1.5
  - pip
  - pip:
      - six==1.16.0
"""


def test_hash_ignores_order_case_spacing_and_env_vars():
    a = TrainingEnvironment(pip_requirements=["Six==1.16.0 ", "numpy"], environment_variables={"A": "1"})
    b = TrainingEnvironment(pip_requirements=["numpy", "six==1.16.0"])
    assert a.content_hash() == b.content_hash()
    assert TrainingEnvironment(pip_requirements=["six==1.15.0", "numpy"]).content_hash() != a.content_hash()
    assert (
        TrainingEnvironment(pip_requirements=["numpy", "six==1.16.0"], python_version="3.11").content_hash()
        != a.content_hash()
    )


def test_requirements_file_content_is_hashed(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("six==1.16.0\n# comment\n")
    env = TrainingEnvironment(pip_requirements_file=str(req))
    first = env.content_hash()
    assert first == TrainingEnvironment(pip_requirements=["six==1.16.0"]).content_hash()
    req.write_text("six==1.15.0\n")
    assert env.content_hash() != first


def test_conda_file_translates_to_pip():
    spec = TrainingEnvironment(conda_file=CONDA).spec()
    assert spec["python_version"] == "3.11"
    assert spec["conda"]["pip_translated"] == ["scikit-learn==1.5.*"]
    assert spec["pip_requirements"] == ["six==1.16.0"]


def test_conda_file_that_does_not_parse_names_line_and_column():
    with pytest.raises(EnvironmentSpecError, match=r"given as text is not valid YAML at line 4, column 1"):
        TrainingEnvironment(conda_file="name: x\ndependencies:\n  - a: [\n").spec()


def test_conda_file_unknown_keys_are_listed(tmp_path):
    path = tmp_path / "env.yml"
    path.write_text("name: x\ndependecies: []\n")
    with pytest.raises(EnvironmentSpecError, match=r"unknown keys \['dependecies'\]"):
        TrainingEnvironment(conda_file=str(path)).spec()


def test_conda_packages_without_pypi_twin_are_refused_with_a_list(tmp_path):
    env = TrainingEnvironment(conda_file="dependencies:\n  - cudatoolkit=11.8\n  - mkl\n  - numpy\n")
    with pytest.raises(EnvironmentSpecError, match=r"\['cudatoolkit=11.8', 'mkl'\]"):
        build(env, tmp_path)
    assert list(tmp_path.glob("*")) == [] or all(p.suffix == ".lock" for p in tmp_path.iterdir())


def test_missing_python_version_lists_what_exists(tmp_path):
    with pytest.raises(EnvironmentSpecError, match=r"Python 3\.4 is asked for .* this machine has only"):
        build(TrainingEnvironment(pip_requirements=["six"], python_version="3.4"), tmp_path)
    assert not any(p.is_dir() for p in tmp_path.iterdir())


def test_bad_field_values_fail_at_construction():
    with pytest.raises(ValidationError, match="python_version"):
        TrainingEnvironment(python_version="three")
    with pytest.raises(ValidationError, match="cannot be combined"):
        TrainingEnvironment(python_executable=sys.executable, pip_requirements=["six"])


def test_user_managed_uses_the_given_interpreter(tmp_path):
    built = build(TrainingEnvironment(), tmp_path)
    assert built.python == sys.executable and built.kind == "user-managed"
    with pytest.raises(EnvironmentSpecError, match="is not an executable file"):
        build(TrainingEnvironment(python_executable="/nope/python"), tmp_path)


def test_find_python_current_version():
    assert find_python("%d.%d" % sys.version_info[:2]) == sys.executable


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_build_then_cache_hit_never_rebuilds(tmp_path, installer):
    env = TrainingEnvironment(pip_requirements=["six==1.16.0"])
    built = build(env, tmp_path, installer=installer)
    assert not built.cached and built.installer == installer
    marker = tmp_path / env.content_hash()[:16] / MARKER
    stamp = marker.stat().st_mtime_ns
    started = time.perf_counter()
    again = build(env, tmp_path, installer=installer)
    assert time.perf_counter() - started < 0.5
    assert again.cached and again.python == built.python
    assert marker.stat().st_mtime_ns == stamp
    import subprocess

    out = subprocess.run(
        [built.python, "-c", "import six, sys; print(six.__version__, sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split()[0] == "1.16.0" and out.stdout.split()[1].startswith(str(tmp_path))
    # `pip install` in a job installs into the job's environment: its own pip comes first on PATH.
    pip = Path(built.bin_dir) / "pip"
    assert pip.exists(), sorted(p.name for p in Path(built.bin_dir).iterdir())
    where = subprocess.run([str(pip), "--version"], capture_output=True, text=True, check=True).stdout
    assert str(tmp_path) in where


def test_cached_build_finds_what_build_made_and_builds_nothing(tmp_path):
    env = TrainingEnvironment(pip_requirements=["six==1.16.0"])
    assert cached_build(env, tmp_path) is None and list(tmp_path.iterdir()) == []
    built = build(env, tmp_path)
    assert cached_build(env, tmp_path) == dataclasses.replace(built, cached=True)
    assert cached_build(TrainingEnvironment(), tmp_path).python == sys.executable
    assert cached_build(TrainingEnvironment(python_executable="/nope/python"), tmp_path) is None  # build says why


def test_failed_build_leaves_nothing(tmp_path):
    env = TrainingEnvironment(pip_requirements=["prefect-mltrain-no-such-package-xyz==0.0.1"])
    with pytest.raises(EnvironmentBuildError, match="failed with exit code") as err:
        build(env, tmp_path, installer="uv")
    assert "no-such-package" in str(err.value)
    assert "UV_NATIVE_TLS" not in str(err.value)  # no deprecation warning of our own making
    assert not (tmp_path / env.content_hash()[:16]).exists()
    assert list(tmp_path.iterdir()) == []  # no lock file either


def test_leftover_of_a_killed_build_is_not_used(tmp_path):
    env = TrainingEnvironment(pip_requirements=["six==1.16.0"])
    partial = tmp_path / env.content_hash()[:16]
    (partial / "bin").mkdir(parents=True)
    (partial / "bin" / "python").write_text("half-built")
    built = build(env, tmp_path, installer="uv")
    assert not built.cached
    assert json.loads((partial / MARKER).read_text())["built"]["python"] == built.python


def test_concurrent_builds_of_one_hash_build_once(tmp_path):
    env = TrainingEnvironment(pip_requirements=["six==1.16.0"])
    results = []
    threads = [threading.Thread(target=lambda: results.append(build(env, tmp_path, installer="uv"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.cached for r in results) == [False, True, True]


def test_index_password_is_secret_and_not_hashed():
    a = TrainingEnvironment(
        pip_requirements=["x"], index_url="https://i.example/simple", index_password=SecretStr("hunter2")
    )
    b = TrainingEnvironment(
        pip_requirements=["x"], index_url="https://i.example/simple", index_password=SecretStr("other")
    )
    assert a.content_hash() == b.content_hash()
    assert "hunter2" not in repr(a) and "hunter2" not in json.dumps(a.spec())

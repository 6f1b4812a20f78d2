"""`check_job_file`: a whole job file checked before anything starts, every problem at once.

Pure: no Prefect server is asked (the block loader is a stand-in), nothing is built or run.
"""

import textwrap

import pytest

from prefect_mltrain.blocks import DaskCompute
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.flows.run_job_file import check_job_file
from prefect_mltrain.jobs.jobfile import JobFileError

pytestmark = pytest.mark.unit


def _no_blocks(value, block_cls, parameter):
    raise ConfigurationError(f"`{parameter}`={value!r} names no saved {block_cls.__name__} block (saved ones: none).")


def _files(tmp_path, text, name="sweep.yml"):
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "main.py").write_text("print('hi')\n")
    (tmp_path / "conda.yml").write_text("dependencies:\n  - python=3.4\n  - pip:\n    - mlflow\n")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# Azure's scikit-learn iris sweep (azureml-examples cli/jobs/single-step/scikit-learn/iris/job-sweep.yml),
# broken in several ways at once.
BROKEN_SWEEP = """
    $schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
    type: sweep
    trial:
      code: src
      command: >-
        python main.py
        --iris-csv ${{inputs.iris_csv}}
        --C ${{search_space.C}}
        --kernel ${{search_space.kernel}}
      environment:
        conda_file: conda.yml
    inputs:
      iris_csv: {type: uri_file, path: data/iris.csv}
    compute: azureml:cpu-cluster
    sampling_algorithm: random
    search_space:
      C: {type: uniform, min_value: 0.9, max_value: 0.5}
      kernel: {type: choise, values: ["rbf", "linear"]}
    objective: {goal: minimise, primary_metric: training_f1_score}
    early_termination: {type: bandid, slack_factor: 0.1}
    limits: {max_total_trials: 0, max_concurrent_trials: 10, timeout: -1}
"""


def test_every_problem_of_a_sweep_file_once_with_its_line_and_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(JobFileError) as caught:
        check_job_file(_files(tmp_path, BROKEN_SWEEP), load_block=_no_blocks)
    lines = caught.value.lines()
    expected = [
        ("sweep.yml:12: `trial.environment.conda_file`: Python 3.4 is asked for", "Fix: install Python 3.4"),
        ("sweep.yml:14: `inputs.iris_csv`: `path: data/iris.csv` does not exist", "Fix: correct the path."),
        ("sweep.yml:15: `compute`: `compute`='cpu-cluster' names no saved DaskCompute block", "`compute: local`"),
        ("sweep.yml:18: `search_space.C`: uniform: `min_value` < `max_value` must hold", "Fix: swap them"),
        ("sweep.yml:19: `search_space.kernel`: unknown distribution type 'choise'. Valid types: ['choice',", ""),
        ("sweep.yml:20: `objective`: `goal` must be one of ['maximize', 'minimize'], but got goal='minimise'.", ""),
        ("sweep.yml:21: `early_termination`: `early_termination`: unknown policy type 'bandid'.", "'bandit'"),
        ("sweep.yml:22: `limits.max_total_trials`: `max_total_trials` must be an integer >= 1", "=0."),
        ("sweep.yml:22: `limits.timeout`: `timeout` must be a positive number of seconds", "timeout=-1."),
    ]
    assert len(lines) == len(expected), "\n".join(lines)
    for line, (start, fix) in zip(lines, expected):
        assert line.startswith(start) and fix in line, (line, start, fix)


def test_the_parts_of_a_sweep_are_checked_together_once_each_is_right(tmp_path):
    text = """
        type: sweep
        trial:
          code: src
          command: python main.py --C ${{search_space.C}}
        sampling_algorithm: grid
        search_space:
          C: {type: uniform, min_value: 0.1, max_value: 1}
          unused: {type: choice, values: [1, 2]}
        objective: {goal: maximize, primary_metric: accuracy}
    """
    with pytest.raises(JobFileError) as caught:
        check_job_file(_files(tmp_path, text), load_block=None)
    assert len(caught.value.problems) == 1  # `plan_sweep` stops at the first problem of the whole
    assert "`sampling_algorithm`='grid' needs distributions whose values can be listed" in str(caught.value)
    (tmp_path / "sweep.yml").write_text(textwrap.dedent(text).replace("grid", "random"))
    with pytest.raises(JobFileError, match=r"The search space has \['unused'\], but the command never uses them"):
        check_job_file(tmp_path / "sweep.yml", load_block=None)


def test_environment_fields_that_do_not_combine(tmp_path):
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    text = """
        command: python main.py
        code: src
        environment: {image: python:3.11, build: {path: ctx}}
    """
    with pytest.raises(
        JobFileError, match=r"job.yml:4: `environment`: `dockerfile` cannot be combined with `docker_image`"
    ):
        check_job_file(_files(tmp_path, text, "job.yml"), load_block=None)


def test_a_good_file_passes_and_blocks_are_asked_for(tmp_path):
    text = """
        command: python main.py --lr ${{inputs.lr}}
        code: src
        inputs: {lr: 0.1}
        compute: azureml:cpu-cluster
        limits: {timeout: 60}
    """
    asked = []

    def saved(value, block_cls, parameter):
        asked.append((value, block_cls.__name__, parameter))
        return DaskCompute()

    job = check_job_file(_files(tmp_path, text, "job.yml"), load_block=saved)
    assert (job.compute, job.timeout_seconds) == ("cpu-cluster", 60.0)
    assert asked == [("cpu-cluster", "DaskCompute", "compute")]
    assert check_job_file(tmp_path / "job.yml", load_block=None).compute == "cpu-cluster"  # not asked: none to ask


def test_a_named_sweep_is_checked_for_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_MLTRAIN_HOME", str(tmp_path / "home"))
    text = """
        type: sweep
        name: Iris_Sweep
        trial:
          code: src
          command: python main.py --C ${{search_space.C}}
        search_space: {C: {type: choice, values: [1, 2]}}
        objective: {goal: maximize, primary_metric: accuracy}
    """
    with pytest.raises(JobFileError, match=r"sweep.yml:3: `name`: `name`='Iris_Sweep' must be lowercase.*'iris-sweep'"):
        check_job_file(_files(tmp_path, text), load_block=None)
    (tmp_path / "sweep.yml").write_text(textwrap.dedent(text).replace("Iris_Sweep", "iris-sweep"))
    with pytest.raises(JobFileError, match=r"`name`: `resume` was asked for, but there is no sweep named 'iris-sweep'"):
        check_job_file(tmp_path / "sweep.yml", resume=True, load_block=None)


def test_parts_that_are_right_are_combined_even_when_others_are_wrong(tmp_path):
    """Bayesian sampling with a bandit policy is told in the same round as a bad search-space entry."""
    text = """
        type: sweep
        trial:
          code: src
          command: python main.py --lr ${{search_space.lr}} --boosting ${{search_space.boosting}}
        sampling_algorithm: bayesian
        search_space:
          lr: {type: uniform, min_value: 0.01, max_value: 0.9}
          boosting: {type: choice, values: gbdt}
        objective: {goal: minimize, primary_metric: loss}
        early_termination: {type: bandit, slack_factor: 0.1}
        limits: {max_total_trials: "20", max_concurrent_trials: 30}
    """
    with pytest.raises(JobFileError) as caught:
        check_job_file(_files(tmp_path, text), load_block=None)
    wheres = [p.where for p in caught.value.problems]
    assert sorted(wheres) == ["early_termination", "limits.max_total_trials", "search_space.boosting"], wheres
    # `max_concurrent_trials` is not compared with a `max_total_trials` that is itself wrong.
    assert "max_concurrent_trials" not in str(caught.value)


def test_model_inputs_are_local_paths(tmp_path):
    (tmp_path / "model").mkdir()
    text = """
        command: python main.py --model ${{inputs.model}}
        code: src
        inputs:
          model: {type: mlflow_model, path: model}
    """
    job = check_job_file(_files(tmp_path, text, "job.yml"), load_block=None)
    assert job.inputs["model"].path == str(tmp_path / "model")

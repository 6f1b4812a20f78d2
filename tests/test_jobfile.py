"""Azure ML CLI v2 job files: parsing, validation, placeholders, overrides."""

import textwrap

import pytest

from prefect_mltrain.jobs.jobfile import JobFileError, load_job_file, render_command

pytestmark = pytest.mark.unit


def _write(tmp_path, text, name="job.yml"):
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


JOB = """
    $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
    type: command
    code: src
    command: python train.py --data ${{inputs.data}} --lr ${{inputs.lr}} --out ${{outputs.model}}
    inputs:
      data: {type: uri_file, path: data.csv, mode: download}
      lr: 0.01
    outputs:
      model: {type: uri_folder}
    compute: azureml:cpu-cluster
    experiment_name: iris
    display_name: first
    tags: {owner: me}
"""


def test_command_job_resolves(tmp_path):
    job = load_job_file(_write(tmp_path, JOB))
    assert job.code == tmp_path / "src" and job.compute == "cpu-cluster"
    assert job.inputs["data"].path == str(tmp_path / "data.csv") and job.inputs["data"].mode == "download"
    assert render_command(job, {}, {"model": "outputs/model"}) == (
        f"python train.py --data {tmp_path / 'data.csv'} --lr 0.01 --out outputs/model"
    )
    assert (job.experiment_name, job.display_name, job.tags) == ("iris", "first", {"owner": "me"})


def test_set_overrides_like_az_ml(tmp_path):
    job = load_job_file(_write(tmp_path, JOB), ["inputs.lr=0.5", "compute=local", "tags.stage=dev"])
    assert job.inputs["lr"].value == 0.5 and job.compute is None and job.tags["stage"] == "dev"


@pytest.mark.parametrize(
    "text, message",
    [
        ("type: command\ncommand: [unclosed\n", r"not valid YAML at line 3, column 1: expected .,. or .\]."),
        ("type: pipeline\ncommand: x\n", r"`type: pipeline` is not supported; valid types: \['command', 'sweep'\]"),
        ("type: command\ncode: src\n", r"required key `command` is missing"),
        (
            "type: command\ncode: src\ncommand: echo ${{inputs.nope}}\n",
            r"job.yml:3: `command`: `\$\{\{inputs.nope\}\}` names no entry of `inputs:` \(defined: none\)",
        ),
        (
            "type: command\ncode: src\ncommand: x\ninputs:\n  d: {type: uri_folder, path: missing}\n",
            r"job.yml:5: `inputs.d`: `path: missing` does not exist",
        ),
        (
            "type: command\ncode: src\ncommand: x\nenvironment: azureml:AzureML-sklearn-1.0@latest\n",
            r"registered Azure ML environment.*\{block: <name>\}",
        ),
        (
            "type: command\ncode: src\ncommand: x\ninputs:\n  d: {type: uri_folder, path: azureml:mydata:1}\n",
            r"remote or registered Azure asset",
        ),
        (
            "type: command\ncode: src\ncommand: x\ncomand: y\n",
            r"`comand`: unknown key for a command job. Did you mean `command`\?",
        ),
        ("type: command\ncode: nowhere\ncommand: x\n", r"`code: nowhere` is not a folder"),
        (
            "type: command\ncode: src\ncommand: x\ndistribution: {type: tensorflow}\n",
            r"`distribution.type`: `distribution.type` must be one of \['pytorch', 'mpi'\], but got 'tensorflow'",
        ),
    ],
)
def test_bad_job_files(tmp_path, text, message):
    with pytest.raises(JobFileError, match=message):
        load_job_file(_write(tmp_path, text))


def test_bad_override(tmp_path):
    with pytest.raises(JobFileError, match=r"`--set lr` must look like key.sub=value"):
        load_job_file(_write(tmp_path, JOB), ["lr"])


BROKEN = """
    type: command
    code: src
    comand: python train.py
    command: python train.py --data ${{inputs.data}} --epochs ${{inputs.epochs}} --lr ${{inputs.lr}}
    inputs:
      data: {type: uri_file, path: nowhere.csv}
      epochs: {type: integer, default: ten}
      lr: 0.1
    environment:
      conda_file: conda.yml
      imgae: python:3.11
    distribution: pytorch
    resources: {instance_count: two}
    limits: {timeout: -5}
    tags: [a, b]
"""


def test_every_problem_of_a_file_is_reported_at_once_in_file_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the file is shown as the user typed it: relative to here
    with pytest.raises(JobFileError) as caught:
        load_job_file(_write(tmp_path, BROKEN))
    lines = caught.value.lines()
    expected = [
        "job.yml:4: `comand`: unknown key for a command job. Did you mean `command`?",
        "job.yml:7: `inputs.data`: `path: nowhere.csv` does not exist",
        "job.yml:8: `inputs.epochs`: is `type: integer`, but its value 'ten' is a str. Fix: give an integer",
        "job.yml:11: `environment.conda_file`: `conda.yml` does not exist",
        "job.yml:12: `environment.imgae`: unknown key for an inline environment. Did you mean `image`?",
        "job.yml:13: `distribution`: must be a mapping such as `{type: pytorch}`, but got 'pytorch'.",
        "job.yml:14: `resources.instance_count`: `instance_count` must be an integer >= 1, but got instance_count='two'.",
        "job.yml:15: `limits.timeout`: must be a positive number of seconds, but got -5.",
        "job.yml:16: `tags`: must be a mapping of names to values, but got ['a', 'b'].",
    ]
    assert len(lines) == len(expected), "\n".join(lines)
    for line, start in zip(lines, expected):
        assert line.startswith(start), (line, start)
    # The placeholders of inputs that are themselves wrong are not reported a second time.
    assert not any("names no entry" in line for line in lines)


def test_overridden_values_are_located_at_their_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(JobFileError) as caught:
        load_job_file(_write(tmp_path, JOB), ["resources.instance_count=0", "limits.timeout=soon"])
    assert caught.value.lines() == [
        "job.yml (--set resources.instance_count=0): `resources.instance_count`: `instance_count` must be an "
        "integer >= 1, but got instance_count=0.",
        "job.yml (--set limits.timeout=soon): `limits.timeout`: must be a positive number of seconds, but got "
        "'soon'. Fix: e.g. 3600.",
    ]


def test_a_sweep_trial_is_located_under_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = """
        type: sweep
        trial:
          code: src
          command: python t.py --lr ${{search_space.lr}} --x ${{search_space.x}}
          environment: azureml:AzureML-sklearn-1.5@latest
          distribution: {type: pytorch, process_count_per_instance: 0}
        search_space: {lr: {type: uniform, min_value: 0, max_value: 1}}
    """
    with pytest.raises(JobFileError) as caught:
        load_job_file(_write(tmp_path, text))
    assert [line.split(": ", 2)[:2] for line in caught.value.lines()] == [
        ["job.yml:5", "`trial.command`"],
        ["job.yml:6", "`trial.environment`"],
        ["job.yml:7", "`trial.distribution.process_count_per_instance`"],
    ]
    assert "`${{search_space.x}}` names no entry of `search_space:` (defined: ['lr'])" in str(caught.value)


def test_command_job_timeout_is_kept(tmp_path):
    job = load_job_file(_write(tmp_path, JOB + "    limits: {timeout: 90}\n"))
    assert job.timeout_seconds == 90.0


def test_the_same_problem_in_two_places_is_told_for_each(tmp_path):
    text = JOB + "    resources: {instance_count: 1}\n"
    text = text.replace("lr: 0.01", "lr: {type: integer}\n      epochs: {type: integer}")
    with pytest.raises(JobFileError) as caught:
        load_job_file(_write(tmp_path, text))
    assert [p.where for p in caught.value.problems] == ["inputs.lr", "inputs.epochs"]


def test_the_error_survives_pickling(tmp_path):
    """As a failed flow run's result: Prefect pickles the exception."""
    import pickle

    with pytest.raises(JobFileError) as caught:
        load_job_file(_write(tmp_path, BROKEN))
    again = pickle.loads(pickle.dumps(caught.value))
    assert again.lines() == caught.value.lines() and again.problems == caught.value.problems

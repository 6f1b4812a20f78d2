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
            r"`\$\{\{inputs.nope\}\}` in `command` names no entry of `inputs:`",
        ),
        (
            "type: command\ncode: src\ncommand: x\ninputs:\n  d: {type: uri_folder, path: missing}\n",
            r"input 'd': `path: missing` does not exist",
        ),
        (
            "type: command\ncode: src\ncommand: x\nenvironment: azureml:AzureML-sklearn-1.0@latest\n",
            r"registered Azure ML environment.*\{block: <name>\}",
        ),
        (
            "type: command\ncode: src\ncommand: x\ninputs:\n  d: {type: uri_folder, path: azureml:mydata:1}\n",
            r"remote or registered Azure asset",
        ),
        ("type: command\ncode: src\ncommand: x\ncomand: y\n", r"unknown keys \['comand'\]"),
        ("type: command\ncode: nowhere\ncommand: x\n", r"`code: nowhere` is not a folder"),
        ("type: command\ncode: src\ncommand: x\ndistribution: {type: tensorflow}\n", r"distribution.type: tensorflow"),
    ],
)
def test_bad_job_files(tmp_path, text, message):
    with pytest.raises(JobFileError, match=message):
        load_job_file(_write(tmp_path, text))


def test_bad_override(tmp_path):
    with pytest.raises(JobFileError, match=r"`--set lr` must look like key.sub=value"):
        load_job_file(_write(tmp_path, JOB), ["lr"])

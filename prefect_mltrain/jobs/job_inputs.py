"""A job file's file inputs as its command sees them: the original path, a private copy, or a copy that travels.

Azure ML mounts or downloads an input onto the compute. Here a `mount` is the path itself and a
`download` a private copy that is removed when the job ends; on a compute whose workers run on
other machines no path of this machine reaches the command, so the inputs travel with the
source snapshot instead (`travelling`), whatever their mode.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_mltrain.jobs.jobfile import JobFile
from prefect_mltrain.jobs.snapshot import list_source_files

Logger = logging.Logger | logging.LoggerAdapter[Any]

#: Where inputs that travel with the snapshot sit, relative to the job's working folder.
TRAVELLING_INPUTS = ".mltrain-inputs"


@dataclass(frozen=True)
class StagedInputs:
    """Where the job's command runs from (its source directory) and the paths it sees for its file inputs."""

    code: str
    inputs: dict[str, str]


@contextmanager
def staged_inputs(job: JobFile, scratch: Path, runs_here: bool, logger: Logger) -> Iterator[StagedInputs]:
    """Stage the file inputs of `job` for its command; `scratch` (the copies) is removed at the end.

    Args:
        job: The checked job file.
        scratch: A folder of this job's own for the copies (removed when the job ends, as the
            scratch disk of an Azure ML compute is, whether the job succeeded or not).
        runs_here: Whether the compute's workers run on this machine and see its files.
        logger: Where to say that inputs travel.
    """
    try:
        with_path = {name: Path(item.path) for name, item in job.inputs.items() if item.path is not None}
        if with_path and not runs_here:
            yield _travelling(job, with_path, scratch, logger)
            return
        staged = {}
        for name, path in with_path.items():
            download = job.inputs[name].mode == "download"
            staged[name] = str(_copy(path, scratch / name / path.name)) if download else str(path)
        yield StagedInputs(str(job.code), staged)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target


def _travelling(job: JobFile, inputs: dict[str, Path], scratch: Path, logger: Logger) -> StagedInputs:
    """The job's code (the files its snapshot takes) and its inputs under `.mltrain-inputs/`, in one folder.

    The folder becomes the job's source directory, so the inputs reach workers on other machines
    with the code (content-addressed, downloaded once per worker) and the command reads them by a
    path relative to its working folder. Ignore files were applied while copying the code: the
    copy's own `.amlignore` is empty, so that a `*.csv` in the user's `.gitignore` cannot drop an input.
    """
    code = scratch / "code"
    for file, _ in list_source_files(job.code):
        _copy(job.code / file, code / file)
    (code / ".amlignore").write_text("# the files of the job's code, already filtered, and its inputs\n")
    staged: dict[str, str] = {}
    for name, path in inputs.items():
        rel = Path(TRAVELLING_INPUTS) / name / path.name
        _copy(path, code / rel)
        staged[name] = str(rel)
    logger.info(
        "The job's compute runs on other machines: its inputs %s travel with its source snapshot "
        "(as mode `download`) and the command reads them under %s/.",
        ", ".join(inputs),
        TRAVELLING_INPUTS,
    )
    return StagedInputs(str(code), staged)

"""Run a job's command in its environment, streaming every output line into the run's logs."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from prefect_mltrain.errors import JobFailedError
from prefect_mltrain.jobs.containers import ContainerSpec
from prefect_mltrain.jobs.launch import run


@task(name="run-command")
def run_command(
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    log_file: str,
    timeout_seconds: float | None = None,
    container: ContainerSpec | None = None,
    stop_file: str | None = None,
) -> int:
    """Run `argv` in `cwd`, logging stdout at INFO and stderr at WARNING as lines arrive.

    Every line also goes to `log_file` (Azure ML's `user_logs/std_log.txt`). With a
    `container`, `argv` runs in that image (`docker run`, built here on the worker) with
    `cwd` mounted as its working directory and `env` passed in; the container is removed
    afterwards whatever happened. When `stop_file` appears (a distributed job whose other
    rank failed, or a job whose MLflow run could not be created), the command is killed; the
    file says why.

    Returns:
        The exit code, 0.

    Raises:
        JobFailedError: Non-zero exit or timeout; the message has the exit code and stderr tail.
    """
    logger = get_run_logger()
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", buffering=1) as log:

        def on_line(stream: str, line: str) -> None:
            log.write(line + "\n")
            if stream == "stdout":
                logger.info("%s", line)
            else:
                logger.warning("%s", line)

        result = run(
            argv,
            cwd,
            env,
            on_line,
            container=container,
            timeout=timeout_seconds,
            should_stop=(lambda: os.path.exists(stop_file)) if stop_file else None,
        )
    if result.stopped:
        reason = Path(stop_file).read_text().strip() if stop_file else ""
        raise JobFailedError(
            f"Stopped because {reason or 'the flow asked it to stop'}.",
            exit_code=result.exit_code,
            stderr_tail=result.stderr_tail,
        )
    if result.timed_out:
        raise JobFailedError(
            f"The job ran past `timeout_seconds`={timeout_seconds} and was killed. Last output:\n{result.output_tail}",
            exit_code=result.exit_code,
            stderr_tail=result.stderr_tail,
        )
    if result.exit_code != 0:
        raise JobFailedError(
            f"The job's command exited with code {result.exit_code}. Last lines of stderr:\n"
            f"{result.stderr_tail or '(empty)'}",
            exit_code=result.exit_code,
            stderr_tail=result.stderr_tail,
        )
    logger.info("Command finished with exit code 0 in %.2f s", result.seconds)
    return 0

"""Run one process of a job on the worker that gets it, streaming every line into the run's logs."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from prefect_mltrain.errors import JobFailedError
from prefect_mltrain.jobs.execute import JobProcess, ProcessOutcome, execute


@task(name="run-command", cache_policy=NO_CACHE)
def run_command(process: JobProcess) -> ProcessOutcome:
    """Run `process` on this worker, logging stdout at INFO and stderr at WARNING as lines arrive.

    The worker unpacks the job's snapshot (from its cache, or downloaded once from MLflow),
    builds or reuses the environment in its own project home, runs the command (in a
    container for a Docker environment, removed afterwards whatever happened) with every line
    also in the user log (Azure ML's `user_logs/std_log.txt`), and uploads `./outputs`,
    `./logs` and the user log to the job's MLflow run. The command is killed when the job's
    stop variable gets a reason (a distributed job's other rank failed, or its MLflow run
    could not be made).

    Returns:
        What the process did: exit code 0, the worker's host and folder, the outputs it left.

    Raises:
        JobFailedError: Non-zero exit, timeout or stop; the message has the exit code and stderr tail.
    """
    logger = get_run_logger()

    def on_line(stream: str, line: str) -> None:
        if stream == "stdout":
            logger.info("%s", line)
        else:
            logger.warning("%s", line)

    outcome = execute(process, on_line)
    result = outcome.result
    if result.stopped:
        raise JobFailedError(
            f"Stopped because {outcome.stop_reason or 'the flow asked it to stop'}.",
            exit_code=result.exit_code,
            stderr_tail=result.stderr_tail,
        )
    if result.timed_out:
        raise JobFailedError(
            f"The job ran past `timeout_seconds`={process.timeout_seconds} and was killed. Last output:\n"
            f"{result.output_tail}",
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
    logger.info("Command finished with exit code 0 in %.2f s on %s", result.seconds, outcome.host)
    return outcome

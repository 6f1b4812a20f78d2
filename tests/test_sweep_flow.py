"""The sweep flow against the real Prefect server, Dask cluster and MLflow store from conftest."""

from __future__ import annotations

import fcntl
import re

import pytest
import sweep_examples as examples

from prefect_mltrain.sweep import BanditPolicy, FunctionTrial, Limits, Objective, choice, uniform


def _trial_runs(client, name):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"sweep:{name}"])),
        sort=FlowRunSort.NAME_ASC,
        limit=200,
    )
    return [r for r in runs if r.name.startswith(f"{name}-trial-")]


def _artifact(key):
    """The latest artifact with `key`, from the Prefect API."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.get(f"{PREFECT_API_URL.value()}/artifacts/{key}/latest", timeout=30)
    response.raise_for_status()
    return response.json()


def _mlflow_runs(result, **filters):
    from prefect_mltrain.blocks import MlflowTracking

    client = MlflowTracking().client()
    return client, client.search_runs([result.experiment_id], filter_string=f"tags.`mltrain.sweep` = '{result.name}'")


def test_trials_are_subflows_tracked_in_mlflow_with_artifacts(compute, unique_name, prefect_client):
    from prefect_mltrain.flows import sweep

    result = sweep(
        trial=FunctionTrial(examples.heartbeat_probe),
        search_space={"x": uniform(0, 1)},
        objective=Objective("score", "maximize"),
        limits=Limits(max_total_trials=4, max_concurrent_trials=2),
        seed=1,
        name=unique_name,
        compute=compute,
    )
    sweep_run_id = result.flow_run_url.rsplit("/", 1)[-1]

    # Every trial is its own flow run, a subflow of the sweep, and ran without heartbeats.
    runs = _trial_runs(prefect_client, unique_name)
    assert sorted(r.name for r in runs) == [f"{unique_name}-trial-{i}" for i in range(4)]
    for run in runs:
        assert run.state.is_completed()
        assert prefect_client.read_task_run(run.parent_task_run_id).flow_run_id.hex == sweep_run_id.replace("-", "")
    assert {r["trial"] for r in result.trials} == {0, 1, 2, 3}
    assert result.best_value == max(r["score"] for r in result.trials)
    assert result.best_params["x"] == result.best_value

    # MLflow: a parent run, one child per trial nested under it with params and metrics.
    client, mruns = _mlflow_runs(result)
    children = [r for r in mruns if r.data.tags.get("mlflow.parentRunId") == result.mlflow_parent_run_id]
    assert len(children) == 4
    for child in children:
        assert child.info.status == "FINISHED"
        assert float(child.data.params["x"]) == pytest.approx(child.data.metrics["score"])
        assert child.data.metrics["heartbeat_threads"] == 0  # heartbeats off in trial flows
    parent = client.get_run(result.mlflow_parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_completed"] == 4
    charts = [a.path for a in client.list_artifacts(result.mlflow_parent_run_id, "charts")]
    assert "charts/objective_over_trials.png" in charts and "charts/parallel_coordinates.png" in charts

    # Prefect artifacts: progress, leaderboard, charts.
    assert _artifact(f"{unique_name}-progress")["data"] == 100.0
    assert "Parallel coordinates" in _artifact(f"{unique_name}-charts")["data"]
    assert "mlflow_run_id" in str(_artifact(f"{unique_name}-leaderboard")["data"])

    # max_concurrent_trials is a Prefect global concurrency limit, visible in the UI.
    assert prefect_client.read_global_concurrency_limit_by_name(f"mltrain-sweep-{unique_name}").limit == 2


def test_early_termination_stops_trials_visibly_with_the_reason(compute, unique_name, prefect_client):
    from prefect_mltrain.flows import sweep

    result = sweep(
        trial=FunctionTrial(examples.quadratic),
        search_space={"x": choice([0.3, 1.0, 1.5, 2.0]), "epochs": choice([4])},
        objective=Objective("score", "maximize"),
        sampling_algorithm="grid",
        limits=Limits(max_total_trials=4, max_concurrent_trials=1),
        early_termination=BanditPolicy(slack_amount=0.0),
        seed=3,
        name=unique_name,
        compute=compute,
    )
    pruned = [r for r in result.trials if r["state"] == "PRUNED"]
    assert pruned, result.trials
    assert all("bandit" in r["stopped_reason"] and "slack_amount=0.0" in r["stopped_reason"] for r in pruned)
    runs = {r.name: r for r in _trial_runs(prefect_client, unique_name)}
    for row in pruned:
        run = runs[f"{unique_name}-trial-{row['trial']}"]
        assert run.state.name == "Pruned" and run.state.message == row["stopped_reason"]
    client, mruns = _mlflow_runs(result)
    by_id = {r.info.run_id: r for r in mruns}
    for row in pruned:
        child = by_id[row["mlflow_run_id"]]
        assert child.info.status == "KILLED"
        assert child.data.tags["mltrain.stopped_reason"] == row["stopped_reason"]
        # stopped early: fewer than 4 epochs were run
        assert len(client.get_metric_history(child.info.run_id, "score")) < 5
    decisions = _artifact(f"{unique_name}-early-termination")
    assert "bandit" in str(decisions["data"])


def test_missing_primary_metric_fails_after_the_first_trial(compute, unique_name, prefect_client):
    from prefect_mltrain.flows import sweep
    from prefect_mltrain.flows.sweep import MetricNotReportedError

    with pytest.raises(MetricNotReportedError) as info:
        sweep(
            trial=FunctionTrial(examples.no_metric),
            search_space={"x": uniform(0, 1)},
            objective=Objective("accuracy"),
            limits=Limits(max_total_trials=6, max_concurrent_trials=1),
            name=unique_name,
            compute=compute,
        )
    assert "'accuracy'" in str(info.value) and "['loss']" in str(info.value)
    assert len(_trial_runs(prefect_client, unique_name)) == 1


def test_resume_skips_finished_trials_and_reruns_abandoned_ones(compute, unique_name, prefect_client, project_home):
    import optuna

    from prefect_mltrain.blocks import MlflowTracking
    from prefect_mltrain.flows import sweep
    from prefect_mltrain.flows.sweep import study_path, study_storage

    args = dict(
        trial=FunctionTrial(examples.trivial),
        search_space={"x": uniform(0, 1)},
        objective=Objective("score"),
        seed=5,
        name=unique_name,
        compute=compute,
    )
    first = sweep(**args, limits=Limits(max_total_trials=2, max_concurrent_trials=2))
    # Simulate a crash: a trial left RUNNING in the study and its MLflow run left RUNNING.
    study = optuna.load_study(study_name=unique_name, storage=study_storage(study_path(project_home, unique_name)))
    left = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    tracking = MlflowTracking()
    stale = tracking.client().create_run(first.experiment_id, tags={"mltrain.sweep": unique_name})

    second = sweep(**args, limits=Limits(max_total_trials=4, max_concurrent_trials=2))
    names = sorted(r.name for r in _trial_runs(prefect_client, unique_name))
    # 2 finished before + 2 new (one of them the abandoned configuration again); none ran twice.
    assert len(names) == 4 and len(set(names)) == 4
    assert second.mlflow_parent_run_id == first.mlflow_parent_run_id
    rerun = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == left.number]
    assert len(rerun) == 1 and rerun[0].params == left.params and rerun[0].state.name == "COMPLETE"
    assert len([r for r in second.trials if r["state"] == "COMPLETE"]) == 4
    client = tracking.client()
    assert client.get_run(stale.info.run_id).info.status == "KILLED"
    running = client.search_runs(
        [first.experiment_id], filter_string=f"tags.`mltrain.sweep` = '{unique_name}' and attributes.status = 'RUNNING'"
    )
    assert running == []

    # Finished sweeps resume to nothing.
    third = sweep(**args, limits=Limits(max_total_trials=4, max_concurrent_trials=2))
    assert "nothing left to run" in third.stop_reason
    assert len(_trial_runs(prefect_client, unique_name)) == 4


def test_a_failed_trial_is_retried_per_policy(compute, unique_name, prefect_client):
    from prefect_mltrain.flows import sweep

    result = sweep(
        trial=FunctionTrial(examples.flaky),
        search_space={"x": uniform(0, 1)},
        objective=Objective("score"),
        limits=Limits(max_total_trials=1, max_concurrent_trials=1, trial_retries=1),
        name=unique_name,
        compute=compute,
    )
    assert result.trials[0]["state"] == "COMPLETE"
    (run,) = _trial_runs(prefect_client, unique_name)
    assert run.state.is_completed() and run.run_count == 2


def test_sweeps_after_sweeps_on_a_threaded_cluster(unique_name):
    """A threaded cluster started inside one sweep serves the next ones (no closed client carried over)."""
    from prefect_mltrain.blocks import DaskCompute
    from prefect_mltrain.flows import sweep

    threaded = DaskCompute(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": 1, "threads_per_worker": 1, "processes": False},
    )
    for i in range(2):
        result = sweep(
            trial=FunctionTrial(examples.trivial),
            search_space={"x": uniform(0, 1)},
            objective=Objective("score"),
            limits=Limits(max_total_trials=2, max_concurrent_trials=1),
            name=f"{unique_name}-{i}",
            compute=threaded,
        )
        assert [r["state"] for r in result.trials] == ["COMPLETE", "COMPLETE"]


def test_bad_input_fails_before_any_trial_runs(compute, unique_name, prefect_client):
    from prefect_mltrain.errors import ConfigurationError
    from prefect_mltrain.flows import sweep

    with pytest.raises(ConfigurationError, match="max_concurrent_trials=5"):
        sweep(
            trial=FunctionTrial(examples.trivial),
            search_space={"x": uniform(0, 1)},
            objective=Objective("score"),
            limits=Limits(max_total_trials=2, max_concurrent_trials=5),
            name=unique_name,
            compute=compute,
        )
    assert _trial_runs(prefect_client, unique_name) == []


def test_one_process_per_sweep_name(project_home, unique_name):
    from prefect_mltrain.flows.sweep import SweepLockedError, _sweep_lock

    path = project_home / "sweeps" / f"{unique_name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process holds the sweep
        with pytest.raises(SweepLockedError, match="already running"):
            with _sweep_lock(path, unique_name):
                pass
        fcntl.flock(other, fcntl.LOCK_UN)
    with _sweep_lock(path, unique_name):
        pass


def test_sklearn_trial_and_register_best_model(compute, unique_name):
    from prefect_mltrain.blocks import RegisteredModel
    from prefect_mltrain.flows import sweep
    from prefect_mltrain.sweep import SklearnTrial

    result = sweep(
        trial=SklearnTrial(
            estimator="sklearn.linear_model.LogisticRegression",
            dataset="iris",
            params={"max_iter": 300},
            log_model=True,
        ),
        search_space={"C": choice([0.01, 1.0])},
        objective=Objective("accuracy"),
        sampling_algorithm="grid",
        limits=Limits(max_total_trials=2, max_concurrent_trials=2),
        name=unique_name,
        compute=compute,
        register_best_model_as=unique_name,
    )
    assert result.model_block == f"{unique_name}-v1"
    entry = RegisteredModel.load(unique_name)
    assert entry.mlflow_run_id == result.best_mlflow_run_id
    assert entry.metrics["accuracy"] == result.best_value


def test_command_trial_gets_search_space_values_as_arguments(compute, unique_name, tmp_path):
    from prefect_mltrain.flows import sweep
    from prefect_mltrain.sweep import CommandTrial

    (tmp_path / "train.py").write_text(
        "import argparse, mlflow\n"
        "p = argparse.ArgumentParser(); p.add_argument('--lr', type=float); p.add_argument('--depth', type=int)\n"
        "a = p.parse_args()\n"
        "for epoch in (1, 2):\n"
        "    mlflow.log_metric('score', a.lr * a.depth * epoch, step=epoch)\n"
    )
    result = sweep(
        trial=CommandTrial(
            script="train.py",
            source_directory=str(tmp_path),
            arguments=["--lr", "${{search_space.lr}}", "--depth", "${{search_space.depth}}"],
            poll_seconds=0.2,
        ),
        search_space={"lr": choice([0.1, 0.2]), "depth": choice([3])},
        objective=Objective("score"),
        sampling_algorithm="grid",
        limits=Limits(max_total_trials=2, max_concurrent_trials=2),
        name=unique_name,
        compute=compute,
    )
    assert result.best_params == {"lr": 0.2, "depth": 3}
    assert result.best_value == pytest.approx(0.2 * 3 * 2)


def test_goal_value_and_timeout_stop_the_sweep(compute, unique_name, prefect_client):
    from prefect_mltrain.flows import sweep

    # Every trivial score is >= -0.49, so the first trial reaches the goal and no more start.
    reached = sweep(
        trial=FunctionTrial(examples.trivial),
        search_space={"x": uniform(0, 1)},
        objective=Objective("score"),
        name=f"{unique_name}-goal",
        compute=compute,
        limits=Limits(max_total_trials=5, max_concurrent_trials=1, goal_value=-0.5),
    )
    assert "goal_value -0.5 reached by trial 0" in reached.stop_reason
    assert len(_trial_runs(prefect_client, f"{unique_name}-goal")) == 1

    # An 8 s sweep timeout stops a running 20 s trial at its next report, visibly.
    timed = sweep(
        trial=FunctionTrial(examples.quadratic),
        search_space={"x": uniform(0, 1), "epochs": choice([200]), "epoch_seconds": choice([0.1])},
        objective=Objective("score"),
        name=f"{unique_name}-timeout",
        compute=compute,
        limits=Limits(max_total_trials=3, max_concurrent_trials=1, timeout_seconds=8),
    )
    assert "timeout_seconds=8" in timed.stop_reason
    (run,) = _trial_runs(prefect_client, f"{unique_name}-timeout")
    assert run.state.name == "Pruned" and "timeout" in run.state.message


@pytest.mark.parametrize(
    "algorithm, policy",
    [
        ("sobol", None),
        ("bayesian", None),
        ("bayesian", {"type": "asha", "min_resource": 1, "reduction_factor": 2}),
        ("random", {"type": "hyperband", "min_resource": 1, "max_resource": 6, "reduction_factor": 2}),
    ],
)
def test_every_sampler_and_pruner_runs_through_the_flow(compute, unique_name, algorithm, policy):
    """Each sampler and Optuna pruner drives real trial flow runs; the same seed draws the same trials."""
    from prefect_mltrain.flows import sweep

    args = dict(
        trial=FunctionTrial(examples.quadratic),
        search_space={"x": uniform(0, 1.5), "epochs": choice([6]), "epoch_seconds": choice([0.0])},
        objective=Objective("score"),
        sampling_algorithm=algorithm,
        early_termination=policy,
        seed=3,
        limits=Limits(max_total_trials=6, max_concurrent_trials=2),
        compute=compute,
    )
    result = sweep(**args, name=unique_name)
    assert len(result.trials) == 6
    assert {t["state"] for t in result.trials} <= {"COMPLETE", "PRUNED"}
    completed = [t["score"] for t in result.trials if t["state"] == "COMPLETE"]
    assert completed and result.best_value == max(completed)
    client, runs = _mlflow_runs(result)
    parent = client.get_run(result.mlflow_parent_run_id)
    assert parent.data.params["sampling_algorithm"] == algorithm
    assert (policy or {}).get("type", "null") in parent.data.params["early_termination"]
    if algorithm == "sobol":  # quasi-random and seeded: a second sweep draws the same points
        again = sweep(
            **{**args, "limits": Limits(max_total_trials=6, max_concurrent_trials=1)}, name=f"{unique_name}-again"
        )
        assert sorted(t["x"] for t in again.trials) == sorted(t["x"] for t in result.trials)


def test_more_concurrent_trials_than_the_compute_runs_is_said_once(compute, unique_name):
    from helpers import flow_run_logs

    from prefect_mltrain.flows import sweep

    result = sweep(
        trial=FunctionTrial(examples.trivial),
        search_space={"x": uniform(0, 1)},
        objective=Objective("score"),
        limits=Limits(max_total_trials=3, max_concurrent_trials=3),
        name=unique_name,
        compute=compute,  # 2 workers of 1 thread (1 while the second is still registering)
    )
    said = [
        m
        for m in flow_run_logs(result.flow_run_url.rsplit("/", 1)[-1], expect="max_concurrent_trials=3", timeout=60)
        if re.match(r"max_concurrent_trials=3, but the compute runs [12] trial\(s\) at a time", m)
    ]
    assert len(said) == 1, said
    assert "DaskCompute(cluster_kwargs={'n_workers': 3" in said[0]

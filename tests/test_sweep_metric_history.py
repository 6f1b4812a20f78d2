"""A command trial's MLflow metric history is exactly what its script logged, point for point.

The sweep reads the script's values back to give them to the early-termination policy; before,
it wrote what it read into the same run again (5 logged points became 16 to 26, step 0 copied to
step 1) and Optuna warned that each step was already reported.
"""

from __future__ import annotations

from prefect_mltrain.sweep import BanditPolicy, CommandTrial, Limits, Objective, choice


def test_history_equals_what_the_script_logged(compute, unique_name, tmp_path):
    from prefect_mltrain.flows import sweep

    (tmp_path / "train.py").write_text(
        "import argparse, time, mlflow\n"
        "p = argparse.ArgumentParser(); p.add_argument('--lr', type=float); a = p.parse_args()\n"
        "for step in range(5):\n"
        "    mlflow.log_metric('score', a.lr * (step + 1), step=step)\n"
        "    mlflow.log_metric('loss', 1.0 / (step + 1), step=step)\n"
        "    time.sleep(0.3)\n"
    )
    result = sweep(
        trial=CommandTrial(
            script="train.py",
            source_directory=str(tmp_path),
            arguments=["--lr", "${{search_space.lr}}"],
            poll_seconds=0.2,
        ),
        search_space={"lr": choice([0.5, 1.0])},
        objective=Objective("score"),
        sampling_algorithm="grid",
        early_termination=BanditPolicy(slack_factor=10.0, evaluation_interval=1),
        limits=Limits(max_total_trials=2, max_concurrent_trials=2),
        name=unique_name,
        compute=compute,
    )
    from prefect_mltrain.blocks import MlflowTracking

    client = MlflowTracking().client()
    assert [t["state"] for t in result.trials] == ["COMPLETE", "COMPLETE"]
    for trial in result.trials:
        lr = trial["lr"]
        for metric, expected in (
            ("score", [lr * (s + 1) for s in range(5)]),
            ("loss", [1.0 / (s + 1) for s in range(5)]),
        ):
            history = sorted(client.get_metric_history(trial["mlflow_run_id"], metric), key=lambda m: m.step)
            assert [(m.step, m.value) for m in history] == list(zip(range(5), expected)), (metric, history)

"""Example training script for `train_job`: plain argparse + MLflow, as in Azure ML's ScriptRunConfig.

Run it as a job:
    from prefect_mltrain.flows import train_job
    train_job(script="train.py", arguments=["--C", 0.5], source_directory="deployments/examples/iris",
              model_path="outputs/model.joblib", model_name="iris-job")
"""

import argparse
import os

import joblib
import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

parser = argparse.ArgumentParser()
parser.add_argument("--C", type=float, default=1.0, help="Inverse regularisation strength.")
parser.add_argument("--max-iter", type=int, default=500)
args = parser.parse_args()

X, y = load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
mlflow.autolog(log_models=False)  # params and training metrics, into the job's run
model = LogisticRegression(C=args.C, max_iter=args.max_iter).fit(X_train, y_train)
accuracy = model.score(X_test, y_test)
mlflow.log_metric("test_accuracy", accuracy)
print(f"C={args.C} test accuracy={accuracy:.4f}")

os.makedirs("outputs", exist_ok=True)  # ./outputs and ./logs are kept as run artifacts
joblib.dump(model, "outputs/model.joblib")

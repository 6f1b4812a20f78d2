"""The Prefect UI shows the deployments as a user sees them: the deployment page of
`train-sklearn/iris` and its *Run -> Custom run* form, with every parameter and its description
(from the flow's docstring). Headless Chromium renders the pages; a screenshot of each is saved
under the test's tmp dir, and the assertions are on the rendered DOM.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from _workers import prefect_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no `chromium`; `bash .ci/docker-setup.sh` installs Debian's chromium"),
    pytest.mark.slow,
]

# The parameters of flows/train_sklearn.py and their docstring descriptions, as the form shows them.
PARAMETERS = {
    "estimator": "Import path of the estimator class.",
    "dataset": "A bundled dataset (iris, digits, wine, breast_cancer, diabetes) or a CSV path.",
    "test_size": "Fraction held out for the test metrics, in (0, 1).",
    "model_name": "Register the fitted model under this name (lowercase, dashes).",
}


def _chromium(url: str, *args: str, budget_ms: int = 25000) -> subprocess.CompletedProcess[str]:
    """Chromium, headless, on a fresh profile, with no background traffic; waits for the SPA."""
    with tempfile.TemporaryDirectory(prefix="mltrain-chromium-") as profile:
        return subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--window-size=1400,2400",
                f"--virtual-time-budget={budget_ms}",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )


def _render(url: str, screenshot: Path) -> str:
    """The DOM of `url` once rendered; a screenshot of it is written to `screenshot`."""
    dom = _chromium(url, "--dump-dom")
    assert dom.returncode == 0 and "<html" in dom.stdout, dom.stderr[-2000:]
    shot = _chromium(url, f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    screenshot.with_suffix(".html").write_text(dom.stdout)
    return dom.stdout


def _text(dom: str) -> str:
    """The visible text of a rendered page, whitespace collapsed."""
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom))).strip()


@pytest.fixture(scope="module")
def iris_deployment(prefect_client):
    prefect_cli("work-pool", "create", "mltrain-process", "--type", "process", "--overwrite")
    prefect_cli("deploy", "--name", "iris")
    return prefect_client.read_deployment_by_name("train-sklearn/iris")


def test_deployment_page_and_custom_run_form_show_the_parameters(iris_deployment, tmp_path: Path) -> None:
    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    page_url = f"{ui}/deployments/deployment/{iris_deployment.id}"
    page = _text(_render(page_url, tmp_path / "deployment.png"))
    assert "Deployments iris Flow train-sklearn Work Pool mltrain-process" in page, page[:2000]
    assert "flows/train_sklearn.py:train_sklearn" in page and str(iris_deployment.id) in page
    description = _text(_render(f"{page_url}?tab=Description", tmp_path / "description.png"))
    assert iris_deployment.description and iris_deployment.description in description

    form = _text(_render(f"{page_url}/run", tmp_path / "custom-run.png"))
    assert "Deployments iris Run Flow train-sklearn" in form and "Parameters" in form
    for name, text in PARAMETERS.items():
        assert name in form, f"parameter {name!r} is not in the custom run form"
        assert text in form, f"the description of {name!r} is not in the custom run form"
    assert "Property is type" in form and "Validate parameters" in form and "Submit" in form
    # The deployment's own parameters fill the form: `params` is a JSON editor, whose text is in the
    # DOM (the text inputs' values are DOM properties, which --dump-dom leaves out; see the screenshot).
    assert '{ "max_iter" : 500 }' in form
    print(f"screenshots under {tmp_path}")


def test_nightly_iris_page_shows_its_paused_schedule_with_a_toggle(prefect_client, tmp_path: Path) -> None:
    """The README's way to turn `nightly-iris` on from the UI: the toggle by its schedule."""
    prefect_cli("work-pool", "create", "mltrain-process", "--type", "process", "--overwrite")
    prefect_cli("deploy", "--name", "nightly-iris")
    deployment = prefect_client.read_deployment_by_name("train-sklearn/nightly-iris")
    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    dom = _render(f"{ui}/deployments/deployment/{deployment.id}", tmp_path / "nightly-iris.png")
    page = _text(dom)
    assert "Schedules" in page and "At 02:00 AM" in page, page[:3000]
    toggles = re.findall(r"<input[^>]*type=\"checkbox\"[^>]*>", dom)
    assert toggles, "no schedule toggle on the deployment page"

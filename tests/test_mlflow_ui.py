"""MLflow's UI as the comparison dashboard: experiments are tagged as model training, runs are
named for their variant and carry MLflow's standard tags and system metrics, and the UI (``wb
ui``, in headless Chromium) lists the quickstart's five variants on the runs table and compares
their eval and loss metrics. Screenshots go to the test's tmp dir (and ``$WB_SCREENSHOTS``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import base_spec
from mlflow.tracking import MlflowClient

from workbench import track
from workbench.axes import apply_all
from workbench.cli.runs import ui_links
from workbench.quickstart import QUICKSTART_VARIANTS
from workbench.runs import RunOptions, execute

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
EVAL_KEY = "eval/classification_shape/0shot"


def test_experiments_are_tagged_model_training_and_runs_sample_system_metrics(tmp_path):
    uri = track.default_uri(tmp_path)
    track.prepare(uri, "new", tmp_path)
    client = MlflowClient(uri)
    # made before the workbench tagged experiments: tagged when next prepared
    older = client.create_experiment("older", (tmp_path / "artifacts" / "older").as_uri())
    assert "mlflow.experimentKind" not in client.get_experiment(older).tags
    assert track.prepare(uri, "older", tmp_path) == older
    for name in ("older", "new"):
        tags = client.get_experiment_by_name(name).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development", name

    tracker = track.Tracker(uri, "new", run_name="r", params={}, tags={}, home=tmp_path,
                            system_metrics_every_s=0.2)  # fmt: skip
    for step in range(1, 51):
        tracker.log_metrics({"loss": 1 / step, "lr": 0.1}, step)
    tracker.flush()  # durable at once, as at a checkpoint
    assert [s for s, _ in track.metric_history(uri, tracker.run_id, "loss")] == [*range(1, 51)]
    time.sleep(1.0)
    tracker.finish()
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert "system/cpu_utilization_percentage" in run.data.metrics
    assert "system/system_memory_usage_megabytes" in run.data.metrics


def _variants(world: dict[str, str], lm_dir: Path) -> dict[str, tuple]:
    """The quickstart's baseline and four variants as (spec, tags), by label, on the tiny world:
    two steps and one evaluation each."""
    base = base_spec(
        world, lm_dir,
        **{"train.steps": 2, "train.checkpoint_every": 0, "eval.every": 2,
           "eval.data": world["eval"], "eval.tasks": "classification_shape", "eval.shots": "0",
           "eval.subset": 2, "eval.batch_size": 2},
    )  # fmt: skip
    plan = {"baseline": {}} | {f"{k}={v}": {k: v} for k, v in QUICKSTART_VARIANTS.items()}
    return {
        label: (apply_all(base, choices), {f"axis.{k}": v for k, v in choices.items()})
        for label, choices in plan.items()
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_ui(home: Path, port: int, log: Path) -> subprocess.Popen:
    """``wb ui`` on ``home``, answering on ``port`` (its own process group, to stop it whole)."""
    wb = Path(sys.executable).parent / "wb"
    server = subprocess.Popen(
        [str(wb), "ui", "--home", str(home), "--port", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise AssertionError("wb ui did not answer in 180 s:\n" + log.read_text()[-3000:])


def _browser(profile: Path):
    """Headless Debian Chromium under Selenium, offline (no driver download, no background
    connections)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
                 f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _wait_for_text(driver, texts: list[str], timeout_s: float = 90) -> str:
    """The page's visible text once it shows every one of ``texts``."""
    deadline, body = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        body = driver.execute_script("return document.body ? document.body.innerText : ''")
        if all(text in body for text in texts):
            return body
        time.sleep(0.5)
    missing = [text for text in texts if text not in body]
    raise AssertionError(f"the page never showed {missing}; it showed:\n{body[:3000]}")


# The compare view's metrics table draws only the rows in sight (each key a "Plot chart" link);
# its key column follows its value grid's scrolling one scroll event late (react-virtualized),
# so each turn scrolls the value grid, then nudges it by a pixel to bring the keys level.
_FIND_METRIC = """
const links = [...document.querySelectorAll('a[title="Plot chart"]')];
const row = links.find(a => a.textContent.trim() === arguments[0]);
if (!links.length) return false;
if (row) {  // drawn; in sight once inside its column's box
  const [r, box] = [row.getBoundingClientRect(), row.closest('.ReactVirtualized__Grid')];
  const b = box.getBoundingClientRect();
  if (r.top >= b.top && r.bottom <= b.bottom) return true;
}
const pause = () => new Promise(done => setTimeout(done, 150));
for (let box = links[0].parentElement; box; box = box.parentElement) {
  const grid = [...box.querySelectorAll('.ReactVirtualized__Grid')]
    .find(g => ['auto', 'scroll'].includes(getComputedStyle(g).overflowY));
  if (grid) { grid.scrollTop += 90; await pause(); grid.scrollTop += 1; await pause(); break; }
}
return false;
"""


def _scroll_to_metric(driver, key: str, tries: int = 60) -> bool:
    """Brings the compare view's metrics table into sight and scrolls it down until the row of
    ``key`` is in sight; False if it never is."""
    from selenium.webdriver.common.by import By

    header = driver.find_element(By.XPATH, "//*[normalize-space(text())='Metrics']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", header)
    for _ in range(tries):
        if driver.execute_script(f"return (async () => {{ {_FIND_METRIC} }})();", key):
            time.sleep(0.5)
            return True
        time.sleep(0.3)
    return False


def _close_assistant(driver) -> None:
    """Closes the MLflow Assistant panel, if it opened, so the picture shows the page."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()
    time.sleep(1.0)  # let the page settle before the picture


def _screenshot(driver, path: Path) -> None:
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    if os.environ.get("WB_SCREENSHOTS"):
        folder = Path(os.environ["WB_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)"
    "; .ci/run installs them",
)
def test_the_mlflow_ui_lists_and_compares_the_quickstart_variants(
    tiny_world, tiny_lm_dirs, tmp_path
):
    home = tmp_path / "home"
    ids: dict[str, str] = {}
    for label, (spec, tags) in _variants(tiny_world, tiny_lm_dirs["llama"]).items():
        options = RunOptions(home=home, experiment="shapes_tiny", tags=tags, show_progress=False)
        ids[label] = execute(spec, options).run_id
    client = MlflowClient(track.default_uri(home))
    names = {label: client.get_run(run_id).info.run_name for label, run_id in ids.items()}
    assert names == {
        label: "shapes_tiny seed0" if label == "baseline" else f"shapes_tiny {label} seed0"
        for label in ids
    }
    run = client.get_run(ids["xattn_every=2"])
    assert run.data.tags["config_id"] and run.data.tags["mlflow.user"]
    assert run.data.tags["mlflow.source.name"] and "mlflow.source.type" in run.data.tags
    commit = run.data.tags["git_commit"]
    if commit != "unknown":
        assert run.data.tags["mlflow.source.git.commit"] == commit.removesuffix("-dirty")
    assert EVAL_KEY in run.data.metrics and "loss/laion" in run.data.metrics
    experiment_id = run.info.experiment_id

    port = _free_port()
    server = _start_ui(home, port, tmp_path / "ui.log")
    try:
        runs_table = ui_links(track.default_uri(home), f"http://127.0.0.1:{port}")["shapes_tiny"]
        _look_at_the_ui(runs_table, experiment_id, ids, list(names.values()), tmp_path)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _look_at_the_ui(runs_table: str, experiment_id: str, ids: dict[str, str], names: list[str],
                    out: Path) -> None:  # fmt: skip
    """The runs table (the URL ``wb ui`` prints) lists ``names``; the compare view of ``ids``
    shows their eval and loss metrics; a screenshot of each under ``out``."""
    driver = _browser(out / "chromium-profile")
    try:
        # MLflow 3.17's UI opens experiments by its GenAI / Model training switch (GenAI unless
        # the URL or the browser says otherwise), not by the experiment's kind tag
        assert runs_table.endswith(f"/#/experiments/{experiment_id}?workflowType=machine_learning")
        driver.get(runs_table)
        _wait_for_text(driver, ["Run Name", *names])
        assert "/runs" in driver.current_url  # the runs table, not the GenAI overview
        _close_assistant(driver)
        _screenshot(driver, out / "mlflow-runs-table.png")

        query = urllib.parse.urlencode(
            {"runs": json.dumps(list(ids.values())), "experiments": json.dumps([experiment_id]),
             "workflowType": "machine_learning"}
        )  # fmt: skip
        driver.get(f"{runs_table.split('/#/')[0]}/#/compare-runs?{query}")
        _wait_for_text(driver, ["Comparing 5 Runs", *names, "Metrics"])
        for key in (EVAL_KEY, "loss/laion", "loss/mmc4"):  # rows of its metrics table, in order
            assert _scroll_to_metric(driver, key), f"the compare view has no metric {key}"
        _screenshot(driver, out / "mlflow-compare.png")
    finally:
        driver.quit()

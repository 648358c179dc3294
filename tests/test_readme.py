"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(tmp_path, monkeypatch, capsys, shapes_backbones):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3, "the README lost its Python examples"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wb-runs").mkdir()
    # the backbones example finds the session's build in its cache instead of building again
    (tmp_path / "wb-runs" / "backbones").symlink_to(shapes_backbones.root.parent)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    assert (tmp_path / "wb-runs" / "tiny" / "llama" / "config.json").exists()
    assert len(list((tmp_path / "wb-runs" / "shapes" / "laion").glob("*.tar"))) == 8
    out = capsys.readouterr().out
    assert "Output:" in out and "zero_shot_shape_accuracy" in out
    assert (tmp_path / "wb-runs" / "mlflow.db").exists()  # the training example ran, tracked
    assert len(list((tmp_path / "wb-runs" / "runs").glob("shapes_tiny-*/result.json"))) == 1

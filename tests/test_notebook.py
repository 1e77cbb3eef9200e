"""examples/notebook_flow.ipynb runs top to bottom in a real Jupyter kernel, and shows what it promises:
the capture as HTML, a matplotlib figure as a PNG and a plotly figure as plotly's own output with an HTML
copy, and no warning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import demo_gguf

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "notebook_flow.ipynb"


@pytest.mark.slow
def test_notebook_runs_in_a_real_kernel(gpt2_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("INSPECTOR_GPT2_OFFLINE_DIR", str(gpt2_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # The kernel must import this checkout's package, not whichever one the environment installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=dict(os.environ))
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    mimes = [set(o.get("data", {})) for o in outputs if o.get("output_type") in ("execute_result", "display_data")]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    # the model it names: the trained demo model where installed (no real GPT-2 offline), else random weights
    shown = "SMOLLM2" if demo_gguf() is not None else "RANDOM"
    assert any("inspector-capture" in h and shown in h.upper() for h in html), "the capture did not show as HTML"
    assert any("image/png" in m for m in mimes), "the matplotlib figure did not display inline"
    assert any("application/vnd.plotly.v1+json" in m for m in mimes), "the plotly figure did not display inline"
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "Warning" not in text, "a cell printed a warning (e.g. TqdmWarning: IProgress not found)"
    for data in (o["data"] for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})):
        assert {"text/html", "image/png"} & set(data), "a plotly figure has no fallback that any viewer shows"
        if "text/html" in data:
            assert "plotly" in data["text/html"] and "cdn." not in data["text/html"]  # plotly.js inside: offline
    assert "argmax agrees with the greedy choice: True" in text
    assert "identical attention: True" in text

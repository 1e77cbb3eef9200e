"""``inspector plot --kind compare X --beams I,J`` (two sequences of one search), and --out/--csv into new folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from plot_helpers import figure_from_html
from run_helpers import write_byte_model_folder, write_dailydialog

from inspector._store import load_capture
from inspector.cli.main import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_byte_model_folder(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def search(model_dir, tmp_path_factory):
    """``inspector capture`` with 3 beams returned: it writes beam-0/1/2.safetensors beside the --out name."""
    out = tmp_path_factory.mktemp("caps") / "beam.safetensors"
    assert main(["capture", "--model", str(model_dir), "--random-weights", "--device", "cpu", "--prompt", "Hi there",
                 "--max-new-tokens", "6", "--num-beams", "3", "--num-return-sequences", "3", "--keep-logits",
                 "--attention-dtype", "float32", "--out", str(out)]) == 0
    assert not out.exists() and all(out.with_name(f"beam-{i}.safetensors").is_file() for i in range(3))
    return out


def _error(capsys, *args) -> str:
    capsys.readouterr()
    assert main(["plot", *map(str, args)]) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("source", ["beam.safetensors", "beam-1.safetensors"])
def test_beams_from_the_out_name_or_one_of_its_files(search, tmp_path, source):
    out = tmp_path / "new" / "folder" / "beams.html"  # missing folders are made
    assert main(["plot", str(search.with_name(source)), "--kind", "compare", "--beams", "0,2", "--out", str(out)]) == 0
    saved = figure_from_html(out.read_text(encoding="utf-8"))
    assert saved["layout"]["meta"]["names"] == ["beam 0", "beam 2"]
    # By hand: beams 0 and 2 share a prefix; aligned steps are those whose whole context is shared.
    a, b = (load_capture(search.with_name(f"beam-{i}.safetensors")) for i in (0, 2))
    n = min(a.seq_len, b.seq_len)
    shared = next((i for i in range(n) if a.token_ids[i] != b.token_ids[i]), n)
    steps = list(range(min(shared, a.seq_len - 1, b.seq_len - 1) - a.prompt_len + 1))
    assert np.asarray(saved["data"][0]["x"]).tolist() == steps
    assert a.logits is not None and b.logits is not None
    la, lb = a.logits[steps].double().log_softmax(-1), b.logits[steps].double().log_softmax(-1)
    np.testing.assert_allclose(np.asarray(saved["data"][0]["y"], dtype=np.float64),
                               (la.exp() * (la - lb)).sum(-1).numpy(), atol=1e-5)


def test_static_beams_file(search, tmp_path):
    out = tmp_path / "b.png"
    assert main(["plot", str(search), "--kind", "compare", "--beams", "1,0", "--kl", "topk", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_beams_errors(search, capsys):
    out = search.with_name("x.png")
    assert "--beams I,J" in _error(capsys, search.with_name("beam-0.safetensors"), "--kind", "compare", "--out", out)
    assert "--kind compare" in _error(capsys, search, "--beams", "0,1", "--out", out)
    assert "leave out --compare and --align" in _error(capsys, search, "--kind", "compare", "--beams", "0,1",
                                                        "--align", "prefix", "--out", out)
    assert "two different sequence numbers" in _error(capsys, search, "--kind", "compare", "--beams", "1,1",
                                                      "--out", out)
    err = _error(capsys, search, "--kind", "compare", "--beams", "0,5", "--out", out)
    assert "beam-5.safetensors" in err and "beam-0.safetensors, beam-1.safetensors, beam-2.safetensors" in err
    single = search.with_name("single.safetensors")
    single.write_bytes(search.with_name("beam-0.safetensors").read_bytes())
    assert "holds a single sequence" in _error(capsys, single, "--kind", "compare", "--beams", "0,1", "--out", out)
    assert not out.exists()


def test_stats_csv_into_a_new_folder(model_dir, tmp_path, capsys):
    from inspector._capture.settings import GenerationSettings
    from inspector._model import load_model
    from inspector.runs import RunConfig, run_corpus

    im = load_model(model_dir, device="cpu", random_weights=True)
    data = write_dailydialog(tmp_path / "dd")
    run = tmp_path / "run"
    run_corpus(RunConfig(data=str(data), limit=2, batch_size=2, settings=GenerationSettings(max_new_tokens=2)), run,
               im, progress=False)
    csv = tmp_path / "tables" / "new" / "by_act.csv"
    assert main(["stats", str(run), "--by", "act", "--csv", str(csv)]) == 0
    assert pd.read_csv(csv, index_col="act")["count"].sum() == 2


def test_plot_out_into_a_new_folder(search, tmp_path):
    out = tmp_path / "figs" / "new" / "heat.svg"
    assert main(["plot", str(search.with_name("beam-0.safetensors")), "--out", str(out)]) == 0
    assert out.read_bytes().lstrip().startswith(b"<?xml")

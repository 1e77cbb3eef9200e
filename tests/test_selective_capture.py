"""Selective capture (layers=, heads=, head_reduce=, attention_rows=): the kept parts against independent references.

Each selected tensor is compared with a teacher-forced forward pass over the final sequence (the
same reference as tests/test_capture_exact.py) cut to the selection by hand, and with the same
parts of a full capture of the same call; files round trip; bad selections are refused before the
model runs; views that need what was not kept refuse with what to capture instead.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_byte_tiny

from inspector._capture.settings import GenerationSettings
from inspector._records.capture import CaptureError
from inspector._records.layout import AttentionLayout
from inspector._store import capture_from_parts, load_capture

BATCH = ["hello there, how are you?", "hi", "what time is it"]
SELECTIONS = [
    {"layers": [0, 2]},
    {"layers": slice(1, None)},
    {"heads": "1-2"},
    {"heads": [0, 3]},
    {"head_reduce": "mean"},
    {"attention_rows": "generated"},
    {"layers": [-1], "heads": [1, 3], "attention_rows": "generated", "head_reduce": "mean"},
]
MODES = {
    "greedy": {},
    "sample": {"do_sample": True, "seed": 3, "top_k": 20},
    "beam": {"num_beams": 3, "num_return_sequences": 2},
}


@pytest.fixture(scope="module")
def im():
    return make_byte_tiny(n_layer=3, n_head=4)


@torch.no_grad()
def reference_attention(im, ids: torch.Tensor) -> torch.Tensor:
    out = im.model(input_ids=ids[None], output_attentions=True, use_cache=False)
    return torch.stack([a[0] for a in out.attentions]).float()


def cut(att: torch.Tensor, layout: AttentionLayout, prompt_len: int) -> torch.Tensor:
    """``[layer, head, query, key]`` reduced to a layout by plain indexing (the expected selection)."""
    if layout.layers is not None:
        att = att[list(layout.layers)]
    if layout.heads is not None:
        att = att[:, list(layout.heads)]
    if layout.head_reduce == "mean":
        att = att.mean(dim=1, keepdim=True)
    if layout.rows == "generated":
        att = att[:, :, prompt_len:]
    return att


def kept(cap) -> torch.Tensor:
    return cap.step_attentions if cap.attention_layout.rows == "generated" else cap.attentions


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("sel", SELECTIONS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_selected_parts_equal_the_reference_and_the_full_capture(im, mode, sel):
    kw = {"max_new_tokens": 6, "attention_dtype": "float32", **MODES[mode]}
    full = im.generate(BATCH, **kw)
    caps = im.generate(BATCH, **kw, **sel)
    assert len(caps) == len(full)
    for f, c in zip(full, caps, strict=True):
        assert torch.equal(c.token_ids, f.token_ids)  # same call, same tokens
        lay = c.attention_layout
        assert not lay.is_full
        got = kept(c)
        assert (c.attentions is None) == (lay.rows == "generated")
        ref = cut(reference_attention(im, c.token_ids), lay, c.prompt_len)
        assert got.shape == ref.shape
        assert (got.float() - ref).abs().max().item() <= 1e-5
        assert torch.allclose(got, cut(f.attentions, lay, f.prompt_len), atol=1e-6, rtol=0)


def test_layout_names_model_ids(im):
    cap = im.generate("hello", max_new_tokens=3, layers=slice(-2, None), heads=[3, -4])
    assert cap.attention_layout == AttentionLayout(layers=(1, 2), heads=(0, 3))
    assert cap.meta.generation["layers"] == [1, 2] and cap.meta.generation["heads"] == [0, 3]
    assert json.dumps(cap.meta.generation)
    # selecting everything is a full capture
    full = im.generate("hello", max_new_tokens=3, layers="0-2", heads=range(4))
    assert full.attention_layout.is_full and full.attentions.shape[:2] == (3, 4)


def test_recorder_buffer_and_hooks_hold_only_the_selection(im, monkeypatch):
    from inspector._capture import recorder as rec_mod

    seen = {}
    real_init = rec_mod.Recorder.__init__

    def spy(self, *a, **k):
        real_init(self, *a, **k)
        seen["rec"] = self

    monkeypatch.setattr(rec_mod.Recorder, "__init__", spy)
    modules = [m for m, _ in rec_mod.find_attention_modules(im.model)]
    counts = []
    real_process = rec_mod.Recorder.process

    def count_hooks(self, *a):  # called while the hooks are attached
        counts.append([len(m._forward_hooks) for m in modules])
        return real_process(self, *a)

    monkeypatch.setattr(rec_mod.Recorder, "process", count_hooks)
    base = [len(m._forward_hooks) for m in modules]  # transformers may hook modules itself
    im.generate(["hello there", "hi"], max_new_tokens=4, layers=[1], heads=[0, 2], attention_rows="generated")
    buf = seen["rec"].buffer
    p_max = len("hello there")
    # rows x kept layers x kept heads x generated rows x keys; a full buffer would be 2 x 3 x 4 x s x s
    assert tuple(buf.shape) == (2, 1, 2, 4, p_max + 4 + 1)
    assert [n - b for n, b in zip(counts[0], base, strict=True)] == [0, 1, 0]


def test_round_trip_keeps_the_layout(im, tmp_path):
    caps = im.generate(BATCH[:2], max_new_tokens=4, layers=[0, 2], heads=[1], head_reduce="mean",
                       attention_rows="generated")
    for i, c in enumerate(caps):
        path = c.save(tmp_path / f"c{i}.safetensors")
        back = load_capture(path)
        assert back.attention_layout == c.attention_layout
        assert back.step_attentions is not None and c.step_attentions is not None
        assert back.attentions is None and torch.equal(back.step_attentions, c.step_attentions)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            assert fh.metadata()["schema_version"] == "3"  # refused by readers that predate selection
    plain = im.generate("hi", max_new_tokens=2)
    with __import__("safetensors").safe_open(str(plain.save(tmp_path / "p.safetensors")), framework="pt") as fh:
        assert fh.metadata()["schema_version"] == "2"
        assert "attention_layout" not in json.loads(fh.metadata()["capture"])


def test_load_refuses_a_layout_that_does_not_match_the_tensors(im):
    cap = im.generate("hello", max_new_tokens=3, layers=[0, 2])
    tensors, doc = cap.to_parts()
    doc["attention_layout"]["layers"] = [0, 1, 2]
    with pytest.raises(CaptureError, match="holds 2 layers, its layout lists 3"):
        capture_from_parts(tensors, doc)
    doc["attention_layout"] = {"layers": [2, 0], "heads": None, "rows": "all", "head_reduce": "none"}
    with pytest.raises(CaptureError, match="sorted and distinct"):
        capture_from_parts(tensors, doc)
    doc["attention_layout"] = {"layers": [0, 2], "heads": None, "rows": "generated", "head_reduce": "none"}
    with pytest.raises(CaptureError, match="belong in step_attentions"):
        capture_from_parts(tensors, doc)


@pytest.mark.parametrize(("sel", "message"), [
    ({"layers": [3]}, r"layers \[3\] out of range: builtin has 3 layers"),
    ({"heads": "0-4"}, r"heads \[4\] out of range: builtin has 4 heads"),
    ({"layers": slice(5, None)}, "selects no layers: builtin has 3 layers"),
])
def test_bad_selection_is_refused_before_the_model_runs(im, monkeypatch, sel, message):
    def boom(*a, **k):
        raise AssertionError("the model ran")

    monkeypatch.setattr(im.model, "forward", boom)
    with pytest.raises(ValueError, match=message):
        im.generate("hello", max_new_tokens=3, **sel)


@pytest.mark.parametrize(("kw", "message"), [
    ({"layers": "0,x"}, "write ids and ranges like '0,3,5-7'"),
    ({"layers": "5-2"}, "the range 5-2 is empty"),
    ({"heads": []}, "heads is empty"),
    ({"heads": [1.5]}, "heads must be integers"),
    ({"layers": slice(0, "a")}, "slice bounds must be integers"),
    ({"attention_rows": "prompt"}, "attention_rows must be one of"),
    ({"head_reduce": "max"}, "head_reduce must be one of"),
    ({"keep_value_norms": True, "heads": [0]}, "keep_value_norms needs every layer and head"),
])
def test_bad_selection_settings(kw, message):
    with pytest.raises(ValueError, match=message):
        GenerationSettings(**kw)


def test_settings_parse_text_and_slices():
    s = GenerationSettings(layers="0,3,5-7", heads=(2, 0, 2))
    assert s.layers == (0, 3, 5, 6, 7) and s.heads == (0, 2)
    assert s.selected(12, 4).layers == (0, 3, 5, 6, 7)
    assert GenerationSettings(layers=slice(None, None, 2)).selected(5, 2).layers == (0, 2, 4)
    assert GenerationSettings(layers=slice(None, None, 2)).to_dict()["layers"] == "::2"


def test_views_that_need_what_was_not_kept_say_what_to_capture(im):
    rows = im.generate("hello", max_new_tokens=3, attention_rows="generated")
    with pytest.raises(CaptureError, match="attention_rows='all'"):
        rows.aggregate()
    some = im.generate("hello", max_new_tokens=3, layers=[1])
    with pytest.raises(CaptureError, match="without layers=/heads="):
        some.stacked_mean()
    mean = im.generate("hello", max_new_tokens=3, head_reduce="mean")
    assert mean.aggregate(layers=None, heads=None).shape == (3, 1, 8, 8)  # a head mean is one head, as in runs


def test_plot_cli_on_selective_captures(im, tmp_path, capsys):
    from inspector.cli.main import main

    out = tmp_path / "h.svg"
    rows = im.generate("hello", max_new_tokens=3, attention_rows="generated").save(tmp_path / "r.safetensors")
    assert main(["plot", str(rows), "--kind", "heatmap", "--out", str(out)]) == 2
    assert "attention_rows" in capsys.readouterr().err
    assert main(["plot", str(rows), "--kind", "topk", "--out", str(out)]) == 0  # needs no attention
    mean = im.generate("hello", max_new_tokens=3, head_reduce="mean").save(tmp_path / "m.safetensors")
    assert main(["plot", str(mean), "--kind", "heatmap", "--out", str(out)]) == 0


def test_cli_flags_reach_the_settings():
    import argparse

    from inspector.cli.capture import add_generation_args, settings_from_args

    parser = argparse.ArgumentParser()
    add_generation_args(parser)
    got = settings_from_args(parser.parse_args(["--layers", "0,3,5-7", "--heads", "0-3", "--attention-rows",
                                                "generated", "--head-reduce", "mean", "--memory-budget", "4GB"]))
    assert got == GenerationSettings(layers=(0, 3, 5, 6, 7), heads=(0, 1, 2, 3), attention_rows="generated",
                                     head_reduce="mean", memory_budget=4 * 10**9)


def test_cli_capture_with_selection_and_its_refusals(tiny_dir, tmp_path, capsys):
    from inspector._store import load_capture
    from inspector.cli.main import main

    out = tmp_path / "c.safetensors"
    argv = ["capture", "--model", str(tiny_dir), "--random-weights", "--prompt", "hello", "--max-new-tokens", "3",
            "--out", str(out)]
    assert main([*argv, "--layers", "1", "--heads", "0", "--attention-rows", "generated"]) == 0
    cap = load_capture(out)
    assert cap.attention_layout == AttentionLayout(layers=(1,), heads=(0,), rows="generated")
    assert cap.step_attentions is not None and cap.step_attentions.shape == (1, 1, 3, cap.seq_len)
    capsys.readouterr()
    assert main([*argv, "--layers", "2"]) == 2  # the tiny model has layers 0 and 1
    assert "layers [2] out of range" in capsys.readouterr().err
    assert main([*argv, "--continuation", " there", "--head-reduce", "mean"]) == 2
    assert "--head-reduce apply to generation" in capsys.readouterr().err


def test_batch_captures_pickle_only_their_own_tensors(im):
    import copy
    import pickle

    caps = im.generate(["hello there, how are you?", "what time is it now, friend?", "tell me a story about a cat"],
                       max_new_tokens=6,
                       keep_hidden_states=True, keep_value_norms=True)
    # the captures are views of one recording buffer (no copy while assembling) ...
    assert all(c.attentions.untyped_storage().nbytes() > 3 * c.attentions.nbytes for c in caps)
    for c in caps:  # ... but each pickles only its own part
        size = len(pickle.dumps(c))
        assert size < c.nbytes + 20_000, (size, c.nbytes)  # not the whole batch's buffer
        back = pickle.loads(pickle.dumps(c))
        assert torch.equal(back.attentions, c.attentions) and torch.equal(back.hidden_states, c.hidden_states)
        assert torch.equal(copy.deepcopy(c).value_norms, c.value_norms)


def test_a_huge_range_is_refused_before_it_is_expanded():
    from inspector._capture.selection import MAX_ID, parse_ids

    with pytest.raises(ValueError, match="beyond any model's layers"):
        parse_ids("0-999999999999", "layers")  # expanded first, this would exhaust the memory
    with pytest.raises(ValueError, match="beyond any model's heads"):
        parse_ids(f"3,{MAX_ID + 1}", "heads")
    assert parse_ids(f"{MAX_ID - 1}-{MAX_ID}", "layers") == (MAX_ID - 1, MAX_ID)

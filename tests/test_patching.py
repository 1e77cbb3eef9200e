"""Activation patching during generation (causal tracing) against hand-written hooks.

A clean prompt and a corrupted one of the same length; ``patch=[(layer, position)]`` writes the clean
run's residual stream (the output of block ``layer`` at prompt token ``position``) into the corrupted
run's prompt pass. The references: the clean capture itself (patching every layer at every position
gives its first step back), the corrupted run (patching its own states changes nothing), and one
teacher-forced pass with the clean state written in by a hook written here.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_architectures import BY_NAME, LAYERS, build
from torch import nn

import inspector

CLEAN = "The cat sat on the mat.\nB:"
CORRUPT = "The dog ran to the car.\nB:"
NEW = 5
LOGIT_TOL = 1e-4
_MODELS: dict[str, inspector.InspectorModel] = {}
#: model_type -> where its decoder layers are
_BLOCKS = {"gpt2": "transformer.h", "llama": "model.layers", "gemma2": "model.layers", "opt": "model.decoder.layers",
           "falcon": "transformer.h", "bloom": "transformer.h", "gpt_neox": "gpt_neox.layers"}


def model_of(name: str, byte_tiny: inspector.InspectorModel) -> inspector.InspectorModel:
    if name == "gpt2":
        return byte_tiny
    if name not in _MODELS:
        _MODELS[name] = build(BY_NAME[name])
    return _MODELS[name]


def _blocks(im: inspector.InspectorModel) -> Any:
    return im.model.get_submodule(_BLOCKS[im.model.config.model_type])


def _out(o: Any) -> torch.Tensor:
    return o[0] if isinstance(o, tuple) else o


@torch.no_grad()
def block_outputs(im: inspector.InspectorModel, ids: torch.Tensor) -> list[torch.Tensor]:
    """``[seq, width]`` output of every block over ``ids`` ``[seq]``, grabbed by hooks written here."""
    grabbed: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda m, a, o: grabbed.append(_out(o)[0].clone())) for b in _blocks(im)]
    try:
        im.model(input_ids=ids[None], use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return grabbed


@torch.no_grad()
def hand_patched_logits(im: inspector.InspectorModel, ids: torch.Tensor, states: dict[tuple[int, int], torch.Tensor]
                        ) -> torch.Tensor:
    """``[seq, vocab]`` logits of one pass over ``ids`` with ``states[(layer, pos)]`` written into block outputs."""
    def hook(layer: int):
        def write(module: nn.Module, args: Any, output: Any) -> Any:
            x = _out(output).clone()
            for (lay, pos), state in states.items():
                if lay == layer:
                    x[0, pos] = state
            return x if isinstance(output, torch.Tensor) else (x, *output[1:])

        return write

    handles = [b.register_forward_hook(hook(i), prepend=True) for i, b in enumerate(_blocks(im))]
    try:
        return im.model(input_ids=ids[None], use_cache=False).logits[0].float()
    finally:
        for h in handles:
            h.remove()


def test_prompts_have_the_same_length():
    assert len(CLEAN.encode()) == len(CORRUPT.encode())


@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma2", "opt", "falcon", "bloom"])
def test_patching_everything_gives_the_clean_first_step(name, byte_tiny):
    """Every layer at every position: the last prompt position's final state is the clean one, so the first
    step's logits are the clean run's; the later steps equal the hand-patched pass (block 0's keys and values
    still come from the corrupted tokens)."""
    im = model_of(name, byte_tiny)
    clean = im.generate(CLEAN, max_new_tokens=NEW, keep_logits=True)
    corrupt = im.generate(CORRUPT, max_new_tokens=NEW, keep_logits=True)
    n = clean.prompt_len
    everything = [(layer, pos) for layer in range(LAYERS) for pos in range(n)]
    cap = im.generate(CORRUPT, max_new_tokens=NEW, keep_logits=True, patch=everything, patch_from=clean)
    assert cap.logits is not None and clean.logits is not None and corrupt.logits is not None
    assert (cap.logits[0] - clean.logits[0]).abs().max().item() <= LOGIT_TOL
    assert (corrupt.logits[0] - clean.logits[0]).abs().max().item() > 10 * LOGIT_TOL  # the corruption mattered
    outs = block_outputs(im, clean.token_ids[:n])
    ref = hand_patched_logits(im, cap.token_ids, {(lay, pos): outs[lay][pos] for lay, pos in everything})
    assert (cap.logits - ref[n - 1 : -1]).abs().max().item() <= LOGIT_TOL
    assert torch.equal(cap.generated_ids, ref[n - 1 : -1].argmax(-1))
    assert cap.meta.interventions["patch"] == [list(p) for p in everything]
    assert cap.meta.interventions["patch_source"]["prompt_text"] == CLEAN


@pytest.mark.parametrize("name", ["gpt2", "llama", "bloom"])
def test_patching_a_run_with_its_own_states_changes_nothing(name, byte_tiny):
    im = model_of(name, byte_tiny)
    corrupt = im.generate(CORRUPT, max_new_tokens=NEW, keep_logits=True)
    pairs = [(layer, pos) for layer in range(LAYERS) for pos in (0, 3, corrupt.prompt_len - 1)]
    cap = im.generate(CORRUPT, max_new_tokens=NEW, keep_logits=True, patch=pairs, patch_from=corrupt)
    assert torch.equal(cap.token_ids, corrupt.token_ids)
    assert cap.logits is not None and corrupt.logits is not None
    assert (cap.logits - corrupt.logits).abs().max().item() <= LOGIT_TOL


@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma2", "opt", "falcon", "bloom", "gpt_neox"])
def test_one_restored_state_equals_the_hand_patched_pass(name, byte_tiny):
    im = model_of(name, byte_tiny)
    clean = im.generate(CLEAN, max_new_tokens=NEW)
    pair = (0, 6)  # block 0's output at the corrupted subject token
    cap = im.generate(CORRUPT, max_new_tokens=NEW, keep_logits=True, patch=[pair], patch_from=clean)
    state = block_outputs(im, clean.token_ids[: clean.prompt_len])[0][6]
    ref = hand_patched_logits(im, cap.token_ids, {pair: state})[cap.prompt_len - 1 : -1]
    assert cap.logits is not None
    assert (cap.logits - ref).abs().max().item() <= LOGIT_TOL
    assert torch.equal(cap.generated_ids, ref.argmax(-1))
    plain = im.generate(CORRUPT, max_new_tokens=NEW, keep_logits=True)
    assert plain.logits is not None
    assert (plain.logits[0] - cap.logits[0]).abs().max().item() > 10 * LOGIT_TOL  # the patch mattered


def test_stored_float32_states_are_used_and_agree(byte_tiny):
    """A source that kept float32 hidden states is read directly; the last layer's stored entry is after the
    final norm, so patching it takes a forward pass. Both give the hand reference."""
    im = byte_tiny
    kept = im.generate(CLEAN, max_new_tokens=2, keep_hidden_states=True, hidden_dtype="float32")
    bare = im.generate(CLEAN, max_new_tokens=2)
    half = im.generate(CLEAN, max_new_tokens=2, keep_hidden_states=True)  # float16: not exact, not used
    a = im.generate(CORRUPT, max_new_tokens=NEW, keep_logits=True, patch="0:6", patch_from=kept)
    b = im.generate(CORRUPT, max_new_tokens=NEW, keep_logits=True, patch="0:6", patch_from=bare)
    c = im.generate(CORRUPT, max_new_tokens=NEW, keep_logits=True, patch="0:6", patch_from=half)
    last = im.generate(CORRUPT, max_new_tokens=2, patch=f"{LAYERS - 1}:6", patch_from=kept)
    how = [x.meta.interventions["patch_source"]["states"] for x in (a, b, c, last)]
    assert how == ["stored", "forward", "forward", "forward"]
    assert a.logits is not None and b.logits is not None and c.logits is not None
    assert (a.logits - b.logits).abs().max().item() <= LOGIT_TOL
    assert torch.equal(a.logits, c.logits)


def test_patched_states_are_what_the_capture_records(byte_tiny):
    """The recorded residual stream at a patched (layer, position) is the source's state."""
    im = byte_tiny
    clean = im.generate(CLEAN, max_new_tokens=2, keep_hidden_states=True, hidden_dtype="float32")
    cap = im.generate(CORRUPT, max_new_tokens=2, keep_hidden_states=True, hidden_dtype="float32", patch="0:6",
                      patch_from=clean)
    assert torch.equal(cap.hidden_states[1, 6], clean.hidden_states[1, 6])
    assert not torch.equal(cap.hidden_states[1, 5], clean.hidden_states[1, 5])


def test_a_batch_and_beams_are_patched_like_one_prompt(byte_tiny):
    im = model_of("llama", byte_tiny)
    clean = im.generate(CLEAN, max_new_tokens=2)
    other = "The pig hid in the hay.\nB:"
    assert len(other.encode()) == len(CLEAN.encode())
    caps = im.generate([CORRUPT, other], max_new_tokens=NEW, keep_logits=True, patch="1:6", patch_from=clean)
    for prompt, cap in zip([CORRUPT, other], caps, strict=True):
        alone = im.generate(prompt, max_new_tokens=NEW, keep_logits=True, patch="1:6", patch_from=clean)
        assert torch.equal(alone.token_ids, cap.token_ids)
        assert alone.logits is not None and cap.logits is not None
        assert (alone.logits - cap.logits).abs().max().item() <= LOGIT_TOL
    state = block_outputs(im, clean.token_ids[: clean.prompt_len])[1][6]
    beams = im.generate([CORRUPT], max_new_tokens=4, num_beams=3, num_return_sequences=2, keep_logits=True,
                        attention_dtype="float32", patch="1:6", patch_from=clean)
    for cap in beams:
        ref = hand_patched_logits(im, cap.token_ids, {(1, 6): state})[cap.prompt_len - 1 : -1]
        assert cap.logits is not None
        assert (cap.logits - ref).abs().max().item() <= LOGIT_TOL


def test_a_saved_source_is_recorded_with_its_file(tmp_path, byte_tiny):
    """A loaded file patches as the capture did, and the settings' ``patch_from`` names the file in the record."""
    from inspector._capture.settings import GenerationSettings

    im = byte_tiny
    clean = im.generate(CLEAN, max_new_tokens=2)
    path = str(clean.save(tmp_path / "clean.safetensors"))
    settings = GenerationSettings(max_new_tokens=3, keep_logits=True, patch=("1:4",), patch_from=path)
    a = im.generate(CORRUPT, settings=settings, patch_from=inspector.load_capture(path))
    b = im.generate(CORRUPT, max_new_tokens=3, keep_logits=True, patch="1:4", patch_from=clean)
    assert torch.equal(a.logits, b.logits)
    assert a.meta.interventions["patch_source"]["path"] == path and a.meta.generation["patch_from"] == path
    assert b.meta.interventions["patch_source"]["path"] is None and b.meta.generation["patch_from"] is None
    with pytest.raises(ValueError, match=r"load it first and pass the capture, patch_from=inspector.load_capture"):
        im.generate(CORRUPT, max_new_tokens=3, patch="1:4", patch_from=path)


def test_bad_patches_are_refused_before_model_work(byte_tiny, tmp_path):
    im = model_of("llama", byte_tiny)
    clean = im.generate(CLEAN, max_new_tokens=2)
    foreign = byte_tiny.generate(CLEAN, max_new_tokens=2)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"patch": "2:1", "patch_from": clean}, "layers 0-1"),
        ({"patch": "0:99", "patch_from": clean}, "tokens 0-"),
        ({"patch": "0:1"}, "needs a source"),
        ({"patch": "0:1", "patch_from": foreign}, "captured with model 'builtin'"),
        ({"patch": "0-1", "patch_from": clean}, "LAYER:POSITION"),
        ({"patch": ["0:1", "0:1"], "patch_from": clean}, "twice"),
        ({"patch_from": str(tmp_path / "x.safetensors")}, "names no LAYER:POSITION"),
        ({"patch": "0:1", "patch_from": str(tmp_path / "clean.safetensors")}, "load it first"),
        ({"patch": "0:1", "patch_from": 3}, "path of a capture file"),
    ]
    calls: list[int] = []
    handle = im.model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        for kwargs, message in cases:
            with pytest.raises(ValueError, match=message):
                im.generate(CORRUPT, max_new_tokens=2, **kwargs)
        with pytest.raises(ValueError, match="give a prompt of the same length"):
            im.generate(CORRUPT + "x", max_new_tokens=2, patch="0:1", patch_from=clean)
        with pytest.raises(ValueError, match="prompt 1 has"):
            im.generate([CORRUPT, "short"], max_new_tokens=2, patch="0:1", patch_from=clean)
        assert calls == []
    finally:
        handle.remove()

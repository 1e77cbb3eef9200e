"""Ablation during generation against hand-written hooks: heads, attention blocks and MLPs, zeroed or
replaced by their prompt mean, on a tiny model of every tested architecture.

The reference is independent of the package: this file says itself where each architecture's output
projection and MLP are, hooks them by hand, and runs one teacher-forced forward pass over the final
sequence (or Hugging Face's own ``generate``). The capture's raw logits must equal that pass's rows
(generation with the KV cache, so the cached keys and values must reflect the ablation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import torch
from test_architectures import ARCHS, BY_NAME, LAYERS, LONG, SHORT, build
from torch import nn
from transformers import GenerationMixin
from transformers.generation.utils import GenerateDecoderOnlyOutput

import inspector

NEW = 6
LOGIT_TOL, ATT_TOL = 1e-4, 1e-5

#: model_type -> (decoder layers, output projection under a layer, what the MLP adds under a layer)
_WHERE: dict[str, tuple[str, str, str]] = {
    "gpt2": ("transformer.h", "attn.c_proj", "mlp"),
    "llama": ("model.layers", "self_attn.o_proj", "mlp"),
    "qwen2": ("model.layers", "self_attn.o_proj", "mlp"),
    "mistral": ("model.layers", "self_attn.o_proj", "mlp"),
    "gemma": ("model.layers", "self_attn.o_proj", "mlp"),
    "gemma2": ("model.layers", "self_attn.o_proj", "mlp"),
    "gpt_neox": ("gpt_neox.layers", "attention.dense", "mlp"),
    "opt": ("model.decoder.layers", "self_attn.out_proj", "fc2"),
    "gptj": ("transformer.h", "attn.out_proj", "mlp"),
    "falcon": ("transformer.h", "self_attention.dense", "mlp"),
    "bloom": ("transformer.h", "self_attention.dense", "mlp.dense_4h_to_h"),
}
_MODELS: dict[str, inspector.InspectorModel] = {}


def model_of(name: str) -> inspector.InspectorModel:
    if name not in _MODELS:
        _MODELS[name] = build(BY_NAME[name])
    return _MODELS[name]


def _module(im: inspector.InspectorModel, layer: int, which: int) -> nn.Module:
    where = _WHERE[im.model.config.model_type]
    block = cast(nn.ModuleList, im.model.get_submodule(where[0]))[layer]
    return block.get_submodule(where[which])


@contextmanager
def hand_ablation(im: inspector.InspectorModel, part: str, mode: str, prompt_len: int) -> Iterator[None]:
    """``part`` (``"L1.H2"``, ``"L0.attn"``, ``"L1.mlp"``) ablated by a hook written here. ``"mean"``: the
    first forward pass inside the block must be over the prompt alone; its mean over positions is kept."""
    layer, what = part.split(".")
    lay = int(layer[1:])
    mean: dict[str, torch.Tensor] = {}

    def replace(x: torch.Tensor) -> torch.Tensor:
        if mode == "zero":
            return torch.zeros_like(x)
        flat = x.dim() == 2  # OPT's MLP runs on [batch * seq, width] (batch 1 here)
        y = x[None] if flat else x
        if "m" not in mean:
            assert y.shape[1] == prompt_len
            mean["m"] = y.mean(dim=1, keepdim=True)
        out = mean["m"].expand_as(y).clone()
        return out[0] if flat else out

    if what.startswith("H"):
        proj = _module(im, lay, 1)
        inner = proj.in_features if isinstance(proj, nn.Linear) else cast(torch.Tensor, proj.weight).shape[0]
        d = inner // im.num_heads
        h = int(what[1:])

        def pre(module: nn.Module, args: Any) -> Any:
            x = args[0].clone()
            x[..., h * d : (h + 1) * d] = replace(x[..., h * d : (h + 1) * d])
            return (x,)

        handle = proj.register_forward_pre_hook(pre)
    else:
        target = _module(im, lay, 1 if what == "attn" else 2)

        def post(module: nn.Module, args: Any, out: Any) -> Any:
            return replace(out)

        handle = target.register_forward_hook(post)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def hand_reference(im: inspector.InspectorModel, cap: inspector.Capture, part: str, mode: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(``[layer, head, seq, seq]`` attention, ``[seq, vocab]`` logits) of one teacher-forced pass over the
    capture's sequence with ``part`` ablated by hand (the prompt alone first, for the mean)."""
    ids = cap.token_ids[None]
    with hand_ablation(im, part, mode, cap.prompt_len):
        if mode == "mean":
            im.model(input_ids=ids[:, : cap.prompt_len], use_cache=False)
        out = im.model(input_ids=ids, output_attentions=True, use_cache=False)
    return torch.stack([a[0] for a in out.attentions]).float(), out.logits[0].float()


def assert_matches_hand(im: inspector.InspectorModel, cap: inspector.Capture, part: str, mode: str,
                        greedy: bool = True) -> None:
    att, logits = hand_reference(im, cap, part, mode)
    rows = logits[cap.prompt_len - 1 : -1]
    assert cap.logits is not None and cap.logits.shape == rows.shape
    err = (cap.logits - rows).abs().max().item()
    assert err <= LOGIT_TOL, f"{im.name} {part} {mode}: logits differ from the hand-ablated pass by {err:.3g}"
    if greedy:
        assert torch.equal(cap.generated_ids, rows.argmax(-1))
    assert cap.attentions is not None
    assert (cap.attentions.float() - att).abs().max().item() <= ATT_TOL
    assert cap.meta.interventions == {"ablate": [part], "ablate_mode": mode}


PARTS = ["L1.H2", "L0.attn", "L1.mlp", "L0.mlp"]


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("name", [a.name for a in ARCHS] + ["gpt2"])
def test_ablation_equals_a_hand_written_hook(name, mode, byte_tiny):
    """Each part on each architecture: the generation's logits and attention equal one teacher-forced pass
    with the same part switched off by a hook written here, and the ablation changes the logits."""
    im = byte_tiny if name == "gpt2" else model_of(name)
    plain = im.generate(LONG, max_new_tokens=NEW, keep_logits=True, attention_dtype="float32")
    for part in PARTS:
        if name == "gpt2" and part == "L1.H2":
            part = "L1.H1"  # the tiny GPT-2 has two heads
        cap = im.generate(LONG, max_new_tokens=NEW, keep_logits=True, attention_dtype="float32", ablate=part,
                          ablate_mode=mode)
        assert_matches_hand(im, cap, part, mode)
        assert cap.logits is not None and plain.logits is not None
        # the part mattered: the first step (same prompt) moved well above the tolerance (10x)
        assert (cap.logits[0] - plain.logits[0]).abs().max().item() > 10 * LOGIT_TOL


@pytest.mark.parametrize("name", ["llama", "gpt_neox", "falcon", "bloom"])
def test_ablated_tokens_equal_huggingface_generate_with_the_hook(name):
    """Greedy tokens and per-step raw logits equal Hugging Face's own ``generate`` run with the hand hook."""
    im = model_of(name)
    cap = im.generate(SHORT, max_new_tokens=NEW, keep_logits=True, ablate="L0.mlp", ablate_mode="mean")
    ids = torch.tensor([list(SHORT.encode())])
    assert isinstance(im.model, GenerationMixin)
    with hand_ablation(im, "L0.mlp", "mean", ids.shape[1]), torch.no_grad():
        out = im.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW,
                                do_sample=False, min_new_tokens=NEW, eos_token_id=None, pad_token_id=0,
                                output_logits=True, return_dict_in_generate=True)
    assert isinstance(out, GenerateDecoderOnlyOutput) and out.logits is not None
    steps = cap.num_steps
    assert torch.equal(out.sequences[0, : cap.seq_len], cap.token_ids)
    ref = torch.stack(out.logits)[:steps, 0].float()
    assert cap.logits is not None
    assert (cap.logits - ref).abs().max().item() <= LOGIT_TOL


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("name", ["llama", "gpt_neox", "opt", "gemma2", "falcon", "bloom"])
def test_padded_batch_equals_each_prompt_alone(name, mode):
    """Left padding: the mean is over each row's own prompt tokens, the padding excluded."""
    im = model_of(name)
    parts = ["L0.H1", "L1.attn", "L0.mlp"]
    caps = im.generate([SHORT, LONG], max_new_tokens=NEW, keep_logits=True, attention_dtype="float32",
                       ablate=parts, ablate_mode=mode)
    assert caps[0].prompt_len < caps[1].prompt_len
    for prompt, cap in zip([SHORT, LONG], caps, strict=True):
        alone = im.generate(prompt, max_new_tokens=NEW, keep_logits=True, attention_dtype="float32", ablate=parts,
                            ablate_mode=mode)
        assert torch.equal(alone.token_ids, cap.token_ids)
        assert alone.logits is not None and cap.logits is not None
        assert alone.attentions is not None and cap.attentions is not None
        assert (alone.logits - cap.logits).abs().max().item() <= LOGIT_TOL
        assert (alone.attentions - cap.attentions).abs().max().item() <= ATT_TOL
        assert cap.meta.interventions == {"ablate": parts, "ablate_mode": mode}


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("name", ["llama", "gemma2", "bloom", "gptj"])
def test_beam_search_each_beam_equals_its_hand_ablated_pass(name, mode):
    """Beams (rows reordered every step) and the final full pass of each returned beam are ablated too."""
    im = model_of(name)
    caps = im.generate([LONG], max_new_tokens=5, num_beams=3, num_return_sequences=3, keep_logits=True,
                       attention_dtype="float32", ablate="L0.mlp", ablate_mode=mode)
    assert len(caps) == 3 and len({tuple(c.token_ids.tolist()) for c in caps}) == 3
    for cap in caps:
        assert_matches_hand(im, cap, "L0.mlp", mode, greedy=False)


def test_beams_of_a_padded_batch_take_their_own_prompts_mean():
    """Two prompts, three beams each: every returned beam (its final full pass included) uses its prompt's mean."""
    im = model_of("llama")
    caps = im.generate([SHORT, LONG], max_new_tokens=4, num_beams=3, num_return_sequences=2, keep_logits=True,
                       attention_dtype="float32", ablate="L1.attn", ablate_mode="mean")
    assert [c.prompt_text for c in caps] == [SHORT, SHORT, LONG, LONG]
    for cap in caps:
        assert_matches_hand(im, cap, "L1.attn", "mean", greedy=False)


def test_sampled_sequences_of_a_batch_are_ablated():
    """Sampling, two sequences per prompt (rows repeated per prompt): each equals its hand-ablated pass."""
    im = model_of("qwen2")
    caps = im.generate([SHORT, LONG], max_new_tokens=4, do_sample=True, seed=3, num_return_sequences=2,
                       keep_logits=True, attention_dtype="float32", ablate="L0.H3", ablate_mode="mean")
    assert [c.prompt_text for c in caps] == [SHORT, SHORT, LONG, LONG]
    for cap in caps:
        assert_matches_hand(im, cap, "L0.H3", "mean", greedy=False)


def test_every_head_of_a_layer_equals_the_attention_block_without_bias(byte_tiny):
    """``L1.H*`` zeroes the output projection's whole input: what remains of the block is its bias."""
    im = byte_tiny
    cap = im.generate(LONG, max_new_tokens=NEW, keep_logits=True, ablate="L1.H*")
    assert cap.meta.interventions["ablate"] == ["L1.H0", "L1.H1"]
    bias = im.model.transformer.h[1].attn.c_proj.bias.detach().clone()

    def post(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
        return bias.expand_as(out).clone()

    handle = im.model.transformer.h[1].attn.c_proj.register_forward_hook(post)
    try:
        with torch.no_grad():
            ref = im.model(input_ids=cap.token_ids[None], use_cache=False).logits[0]
    finally:
        handle.remove()
    assert (cap.logits - ref[cap.prompt_len - 1 : -1]).abs().max().item() <= LOGIT_TOL


def test_mean_of_the_last_mlp_by_hand(byte_tiny):
    """The first step's logits with the last MLP mean-ablated, computed by hand from a clean pass:
    ``lm_head(ln_f(h - mlp(h)[-1] + mean_p mlp(h)[p]))`` at the prompt's last position."""
    im = byte_tiny
    model = im.model
    ids = torch.tensor([list(LONG.encode())])
    grabbed: dict[str, torch.Tensor] = {}
    last = model.transformer.h[LAYERS - 1]
    handles = [last.mlp.register_forward_hook(lambda m, a, o: grabbed.__setitem__("mlp", o[0].clone())),
               last.register_forward_hook(lambda m, a, o: grabbed.__setitem__("block", (o[0] if isinstance(o, tuple)
                                                                                        else o)[0].clone()))]
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    mlp, block = grabbed["mlp"], grabbed["block"]  # [seq, d]
    mean = mlp.sum(0) / mlp.shape[0]
    with torch.no_grad():
        expected = model.lm_head(model.transformer.ln_f(block[-1] - mlp[-1] + mean))
    cap = im.generate(LONG, max_new_tokens=2, keep_logits=True, ablate=f"L{LAYERS - 1}.mlp", ablate_mode="mean")
    assert (cap.logits[0] - expected).abs().max().item() <= LOGIT_TOL


def test_no_ablation_leaves_the_run_unchanged(byte_tiny):
    a = byte_tiny.generate(LONG, max_new_tokens=NEW, keep_logits=True)
    b = byte_tiny.generate(LONG, max_new_tokens=NEW, keep_logits=True, ablate=[], ablate_mode="mean")
    assert torch.equal(a.token_ids, b.token_ids) and torch.equal(a.logits, b.logits)
    assert b.meta.interventions == {}


def test_hooks_are_removed_afterwards(byte_tiny):
    """The modules' hooks afterwards are the ones before (transformers keeps output-recording hooks of its own)."""
    model = byte_tiny.model
    byte_tiny.generate([LONG], max_new_tokens=3, num_beams=2)  # what transformers installs on first use

    def hooks() -> list[tuple[int, ...]]:
        return [(*m._forward_hooks, *m._forward_pre_hooks) for m in model.modules()]

    before = hooks()
    byte_tiny.generate([LONG], max_new_tokens=3, num_beams=2, ablate="L0.H0,L1.mlp", ablate_mode="mean")
    with pytest.raises(ValueError):
        byte_tiny.generate([LONG, SHORT], max_new_tokens=3, patch="0:1", patch_from=byte_tiny.generate(SHORT))
    assert hooks() == before


def _counting(model: nn.Module) -> Callable[[], int]:
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, a: calls.append(1))

    def done() -> int:
        handle.remove()
        return len(calls)

    return done


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ablate": "L2.H0"}, "layers 0-1"),
    ({"ablate": "L0.H4"}, "heads 0-3"),
    ({"ablate": "L0.head1"}, "unknown part"),
    ({"ablate": ["L0.mlp", 3]}, "strings"),
    ({"ablate": "L0.mlp", "ablate_mode": "zeros"}, "ablate_mode must be one of"),
])
def test_bad_ablation_is_refused_before_model_work(kwargs, message):
    im = model_of("llama")
    done = _counting(im.model)
    with pytest.raises(ValueError, match=message):
        im.generate(SHORT, max_new_tokens=2, **kwargs)
    assert done() == 0


def test_settings_carry_ablation_and_round_trip():
    from inspector._capture.settings import GenerationSettings

    # a list with a comma-joined entry on purpose: the field is typed as what it is normalised to
    s = GenerationSettings(ablate=["L5.H3, L7.attn", "L4.mlp"], ablate_mode="mean")  # type: ignore[arg-type]
    assert s.ablate == ("L5.H3", "L7.attn", "L4.mlp") and s.intervenes
    assert GenerationSettings.from_dict(s.to_dict()) == s
    assert s.to_dict()["ablate"] == ["L5.H3", "L7.attn", "L4.mlp"]
    assert not GenerationSettings().intervenes


def test_interventions_are_saved_and_old_files_load(tmp_path, byte_tiny):
    from inspector._store import capture_from_parts, capture_to_parts, load_capture

    cap = byte_tiny.generate(SHORT, max_new_tokens=2, ablate="L0.attn")
    back = load_capture(cap.save(tmp_path / "a.safetensors"))
    assert back.meta.interventions == {"ablate": ["L0.attn"], "ablate_mode": "zero"}
    tensors, doc = capture_to_parts(cap)
    del doc["meta"]["interventions"]  # a file written before interventions existed
    assert capture_from_parts(tensors, doc).meta.interventions == {}
    doc["meta"]["interventions"] = ["L0.attn"]
    with pytest.raises(ValueError, match="interventions"):
        capture_from_parts(tensors, doc)


def test_figure_titles_say_what_was_ablated(byte_tiny):
    from inspector.plots.labels import capture_title, intervention_note

    cap = byte_tiny.generate(SHORT, max_new_tokens=2, ablate="L0.H1,L1.attn", ablate_mode="mean")
    assert intervention_note(cap.meta.interventions) == "ablated: L0.H1, L1.attn (mean)"
    assert "ablated: L0.H1, L1.attn (mean)" in capture_title(cap, "Attention")
    plain = byte_tiny.generate(SHORT, max_new_tokens=2)
    assert "ablated" not in capture_title(plain, "Attention")


@pytest.mark.slow
def test_ablating_a_real_part_changes_the_trained_model(smollm2):
    """SmolLM2: ablating nothing changes nothing; zeroing layer 0's MLP (which real models lean on) changes the
    next-token distribution a lot, exactly as a hand-written hook does; one head's mean changes it a little."""
    prompt = "The capital of France is"
    base = smollm2.generate(prompt, max_new_tokens=4, keep_logits=True)
    none = smollm2.generate(prompt, max_new_tokens=4, keep_logits=True, ablate=[])
    assert torch.equal(base.token_ids, none.token_ids) and torch.equal(base.logits, none.logits)
    cap = smollm2.generate(prompt, max_new_tokens=4, keep_logits=True, attention_dtype="float32", ablate="L0.mlp")
    assert_matches_hand(smollm2, cap, "L0.mlp", "zero")
    first = torch.log_softmax(base.logits[0], -1), torch.log_softmax(cap.logits[0], -1)
    kl = float((first[0].exp() * (first[0] - first[1])).sum())
    assert kl > 1.0, f"KL(base || L0.mlp ablated) = {kl:.3g} at the first step"
    head = smollm2.generate(prompt, max_new_tokens=4, keep_logits=True, attention_dtype="float32",
                            ablate="L5.H3", ablate_mode="mean")
    assert_matches_hand(smollm2, head, "L5.H3", "mean", greedy=False)
    assert (head.logits[0] - base.logits[0]).abs().max().item() > 10 * LOGIT_TOL


@pytest.mark.parametrize("interactive", [False, True], ids=["static", "interactive"])
def test_every_capture_figure_says_what_was_ablated(byte_tiny, interactive):
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from inspector.plots import make_figure

    cap = byte_tiny.generate(SHORT, max_new_tokens=3, ablate="L0.H1,L1.mlp", ablate_mode="mean")
    note = "ablated: L0.H1, L1.mlp (mean)"
    for kind in ("heatmap", "heads", "topk", "token", "rollout", "head-stats", "text"):
        fig = make_figure(kind, cap, interactive=interactive)
        if isinstance(fig, str):  # the coloured text page
            shown = fig
        elif interactive:
            shown = fig.layout.title.text or ""
        else:
            shown = " ".join(t.get_text() for t in fig.findobj(Text))
            plt.close(fig)
        assert note in shown.replace("\n", " "), f"{kind}: {shown[:200]!r}"

"""Test data for the plot tests: synthetic captures of any size and a small run summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
import torch

from inspector._records.capture import Capture, CaptureMeta, TokenScores

if TYPE_CHECKING:
    from matplotlib.patches import Patch

WORDS = ["the", " cat", " sat", " on", " mat", ".", "\n", " $5", " <b>", " ", "é", " and"]


def synthetic_capture(
    seq: int = 520,
    prompt_len: int = 400,
    n_layer: int = 12,
    n_head: int = 12,
    k: int = 10,
    seed: int = 0,
    random_weights: bool = False,
    attention: bool = True,
) -> Capture:
    """A valid capture with random row-normalised causal attention and consistent top-k lists."""
    g = torch.Generator().manual_seed(seed)
    vocab = 1000
    token_ids = torch.randint(0, vocab, (seq,), generator=g)
    steps = seq - prompt_len
    att = None
    if attention:
        # Like GPT-2: a strong sink on token 0, a pull to recent tokens, noise elsewhere.
        scores = torch.randn(n_layer, n_head, seq, seq, generator=g) * 1.5
        scores[..., 0] += 4.0
        dist = (torch.arange(seq)[:, None] - torch.arange(seq)[None, :]).clamp(min=0).float()
        scores -= 0.3 * dist.clamp(max=10)
        scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
        att = scores.softmax(-1).to(torch.float16)

    def token_scores() -> TokenScores:
        logits = torch.randn(steps, vocab, generator=g) * 3
        chosen = token_ids[prompt_len:]
        logp = logits.log_softmax(-1)
        top = logp.topk(k, dim=-1)
        chosen_lp = logp.gather(1, chosen[:, None])[:, 0]
        rank = (logp > chosen_lp[:, None]).sum(-1) + 1
        return TokenScores(
            entropy=-(logp.exp() * logp).sum(-1),
            chosen_logprob=chosen_lp,
            chosen_rank=rank,
            topk_ids=top.indices,
            topk_logprobs=top.values,
        )

    raw = token_scores()
    labels = {i: WORDS[i % len(WORDS)] + ("" if i < len(WORDS) else str(i)) for i in range(vocab)}
    tokens = [labels[int(t)] for t in token_ids]
    return Capture(
        token_ids=token_ids,
        tokens=tokens,
        prompt_len=prompt_len,
        prompt_text="".join(tokens[:prompt_len]),
        generated_text="".join(tokens[prompt_len:]),
        stop_reason="length",
        raw=raw,
        processed=raw,
        attentions=att,
        meta=CaptureMeta(model="synthetic", random_weights=random_weights),
        labels=labels,
    )


EMOTIONS = ["no emotion", "anger", "happiness", "surprise", "sadness"]
ACTS = ["inform", "question", "directive", "commissive"]


def summary_frame(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """A small run summary with the columns ``inspector run`` writes."""
    rng = np.random.default_rng(seed)
    share = rng.dirichlet([2, 2, 1], size=rows)
    return pd.DataFrame(
        {
            "dial_id": np.arange(rows) // 4,
            "turn": np.arange(rows) % 4,
            "act": rng.choice(ACTS, rows),
            "emotion": rng.choice(EMOTIONS, rows),
            "response_act": rng.choice(ACTS, rows),
            "response_emotion": rng.choice(EMOTIONS, rows),
            "entropy_mean": rng.gamma(4, 1, rows),
            "entropy_max": rng.gamma(8, 1, rows),
            "chosen_prob_mean": rng.uniform(0, 1, rows),
            "attn_prompt_share": share[:, 0],
            "attn_generated_share": share[:, 1],
            "attn_first_share": rng.uniform(0, 0.8, rows),
            "attn_entropy_mean": rng.gamma(3, 1, rows),
            "attn_last_user_turn": share[:, 2],
            "attn_earlier_turns": 1 - share[:, 2],
            "attn_speaker_user": share[:, 0],
            "attn_speaker_agent": 1 - share[:, 0],
            "prompt_tokens": rng.integers(10, 300, rows),
            "generated_tokens": rng.integers(1, 40, rows),
            "stop_reason": rng.choice(["eos", "length"], rows),
        }
    )


def _decode(value):
    """plotly's typed-array encoding (``{"dtype", "bdata", "shape"}``) back to NumPy; lists as arrays."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            arr = arr.reshape([int(s) for s in str(value["shape"]).split(",")])
        return arr
    return value


def figure_from_html(html: str) -> dict:
    """The ``data`` and ``layout`` a saved plotly HTML page draws, read back from its ``Plotly.newPlot`` call."""
    import json

    start = html.index("Plotly.newPlot(")
    dec = json.JSONDecoder()
    pos = start + len("Plotly.newPlot(")
    args = []
    for _ in range(3):
        while html[pos] in " \n\t,":
            pos += 1
        obj, pos = dec.raw_decode(html, pos)
        args.append(obj)
    _div, data, layout = args
    for trace in data:
        for key in ("x", "y", "z"):
            if key in trace:
                trace[key] = _decode(trace[key])
    return {"data": data, "layout": layout}


def face_rgba(patch: Patch) -> tuple[float, float, float, float]:
    """A drawn patch's face colour as (r, g, b, alpha) in [0, 1].

    matplotlib stores a patch's face colour as an RGBA tuple (``to_rgba``); its stubs type the getter
    as any colour spec, so the tuple is cast here.
    """
    return cast(tuple[float, float, float, float], patch.get_facecolor())

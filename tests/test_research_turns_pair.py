"""research_columns' shared-prefix path (condition_share=False) against the two separate forced passes, on DailyDialog.

The reference is the path that scores the plain and the conditioned prompt in two independent
left-padded passes (``condition_share=True``, whose columns test_research_turns.py checks against
direct forward passes), plus one direct teacher-forced pass per turn here.
"""

from __future__ import annotations

import math

import pytest
import torch

from inspector.data import build_prompt, load_dailydialog
from inspector.research.condition import CONDITION_SHARE_COLUMN, condition_prompt
from inspector.research.turns import RESEARCH_COLUMNS, reply_text, research_columns


def dd_turns(im, dd_dir, n: int = 10):
    """(plain prompts, responses, targets) of the first ``n`` turns of the validation split; every third
    turn loses its target, and a dialogue's last turn has no response."""
    data = load_dailydialog("validation", dd_dir)
    prompts, responses = [], []
    targets: list[str | None] = []
    for d in data.dialogues:
        for t in range(len(d)):
            last = t == len(d) - 1
            prompts.append(build_prompt(d.turns, t, im.tokenizer, context_turns=2))
            responses.append(None if last else d.turns[t + 1])
            targets.append(None if last or len(targets) % 3 == 2 else d.emotion_names[t + 1])
            if len(prompts) == n:
                return prompts, responses, targets
    return prompts, responses, targets


@torch.no_grad()
def loglik(im, prompt: str, reply: str) -> float:
    p = list(im.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    r = list(im.tokenizer(reply, add_special_tokens=False)["input_ids"])
    out = im.model(input_ids=torch.tensor([p + r]), use_cache=False)
    logp = torch.log_softmax(out.logits[0, len(p) - 1 : -1].double(), dim=-1)
    return float(logp[torch.arange(len(r)), torch.tensor(r)].sum())


@pytest.mark.parametrize("model", ["tiny", "byte_tiny"])
def test_shared_prefix_columns_equal_separate_passes(model, dd_dir, request):
    im = request.getfixturevalue(model)
    prompts, responses, targets = dd_turns(im, dd_dir)
    assert any(r is None for r in responses) and any(t is None for t, r in zip(targets, responses, strict=True) if r)
    fast = research_columns(im, prompts, responses, targets, condition_share=False)
    slow = research_columns(im, prompts, responses, targets, condition_share=True)
    checked = 0
    for i, (f, s) in enumerate(zip(fast, slow, strict=True)):
        assert list(f) == list(RESEARCH_COLUMNS)
        assert math.isnan(f[CONDITION_SHARE_COLUMN])
        for col in RESEARCH_COLUMNS[:-1]:
            if math.isnan(s[col]):
                assert math.isnan(f[col]), (i, col)
            else:
                assert f[col] == pytest.approx(s[col], rel=1e-5, abs=1e-5), (i, col)
        if targets[i] is not None and responses[i] is not None:
            reply = reply_text(responses[i])
            assert reply is not None
            cond = condition_prompt(prompts[i], targets[i], im.tokenizer).text
            want = loglik(im, cond, reply) - loglik(im, prompts[i].text, reply)
            assert f["cond_delta_loglik"] == pytest.approx(want, abs=1e-3)
            checked += 1
    assert checked >= 3

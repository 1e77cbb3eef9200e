"""Known structure of a trained model (SmolLM2-135M-Instruct): induction heads, an attention sink, the lens converging.

Each claim is checked through the public API (``score``, head statistics, the logit lens) and
the package's numbers are compared with a plain forward pass of the same model where they can be.
Layers are counted 0..29; the "middle half" is layers ``L/4 .. L/4 + L/2 - 1``, a "quarter" the
first or last ``L // 4`` layers (lens entry ``l + 1`` is the output of layer ``l``).
"""

from __future__ import annotations

import random
import statistics

import pytest
import torch

from inspector.analysis import capture_head_stats, logit_lens, rank_heads, teacher_forced_hidden_states

pytestmark = pytest.mark.slow

#: Common English nouns; 40 of them are drawn without replacement (seeded).
WORDS = (
    "time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child", "world", "school", "state",
    "family", "student", "group", "country", "problem", "hand", "part", "place", "case", "week", "company",
    "system", "program", "question", "work", "government", "number", "night", "point", "home", "water", "room",
    "mother", "area", "money", "story", "fact", "month", "lot", "right", "study", "book", "eye", "job", "word",
    "business", "issue", "side", "kind", "head", "house", "service", "friend", "father", "power", "hour", "game",
    "line", "end", "member", "law", "car", "city", "community", "name", "president", "team", "minute", "idea",
    "kid", "body", "information", "back", "parent", "face", "others", "level", "office", "door", "health", "person",
    "art", "war", "history", "party", "result", "change", "morning", "reason", "research", "girl", "guy", "moment",
    "air", "teacher", "force", "education",
)
SEED, NUM_WORDS = 0, 40
#: DailyDialog dialogues whose first turn is the prompt and second the forced reply.
DIALOGUES = range(4)


@pytest.fixture(scope="module")
def repeated(smollm2):
    """``(copy_ids, capture, plain)``: 40 random words twice, scored after ``"Words:"``, and a plain
    forward pass over the same tokens (attention and logits)."""
    words = random.Random(SEED).sample(WORDS, NUM_WORDS)
    copy = " " + " ".join(words)
    copy_ids = smollm2.tokenizer(copy, add_special_tokens=False)["input_ids"]
    cap = smollm2.score("Words:", copy + copy, attention_dtype=torch.float32)
    with torch.no_grad():
        plain = smollm2.model(cap.token_ids[None], output_attentions=True)
    return copy_ids, cap, plain


def _middle_half(num_layers: int) -> slice:
    return slice(num_layers // 4, num_layers // 4 + num_layers // 2)


def test_an_induction_head_copies_the_second_copy(smollm2, repeated):
    copy_ids, cap, plain = repeated
    ids = cap.token_ids.tolist()
    assert ids[cap.prompt_len:] == copy_ids * 2  # the copies tokenize alike, so the second repeats the first
    att = torch.stack([a[0] for a in plain.attentions])  # [layer, head, query, key]
    hits, prev = [], []
    for i in range(1, len(ids)):
        prev.append(att[:, :, i, i - 1])
        earlier = [j for j in range(i) if ids[j] == ids[i]]
        if earlier:
            hits.append(att[:, :, i, max(earlier) + 1])
    stats = capture_head_stats(cap)
    assert stats.induction_rows == len(hits) >= NUM_WORDS
    torch.testing.assert_close(stats.induction, torch.stack(hits, -1).mean(-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(stats.previous, torch.stack(prev, -1).mean(-1), atol=1e-4, rtol=1e-4)
    top = rank_heads(stats, "induction", top=1).iloc[0]
    assert top["induction"] >= 0.3, rank_heads(stats, "induction", top=5)


def test_the_second_copy_is_predicted_from_the_first(repeated):
    copy_ids, cap, plain = repeated
    n = len(copy_ids)
    nll = -cap.raw.chosen_logprob  # [step] forced scoring: the continuation's tokens
    logp = torch.log_softmax(plain.logits[0].float(), -1)
    ids = cap.token_ids
    forced = torch.stack([-logp[p - 1, ids[p]] for p in range(cap.prompt_len, cap.seq_len)])
    torch.testing.assert_close(nll, forced, atol=1e-3, rtol=1e-4)
    first, second = nll[:n].mean().item(), nll[n:].mean().item()
    assert first - second >= 2.0, (first, second)


@pytest.fixture(scope="module")
def dialog_turns(smollm2, dd_dir):
    """Forced captures of the second turn after the first of a few DailyDialog dialogues."""
    from inspector.data.dailydialog import load_dailydialog
    from inspector.data.prompts import build_prompt

    dd = load_dailydialog("validation", dd_dir)
    prompts = [build_prompt(dd[d], 0, smollm2.tokenizer).text for d in DIALOGUES]
    replies = [" " + dd[d].turns[1].strip() for d in DIALOGUES]
    return smollm2.score(prompts, replies, attention_dtype=torch.float32)


def test_the_first_token_is_an_attention_sink(smollm2, repeated, dialog_turns):
    _, cap, plain = repeated
    middle = _middle_half(smollm2.num_layers)
    att = torch.stack([a[0] for a in plain.attentions])
    stats = capture_head_stats(cap)
    torch.testing.assert_close(stats.sink, att[:, :, 1:, 0].mean(-1), atol=1e-4, rtol=1e-4)
    for c in [cap, *dialog_turns]:
        sink = capture_head_stats(c).sink[middle].mean().item()
        assert sink >= 0.3, (c.prompt_text[:40], sink)


def test_the_logit_lens_converges_to_the_output(smollm2, dialog_turns):
    layers = smollm2.num_layers
    quarter = layers // 4
    first, last = [], []
    for cap in dialog_turns:
        pos = torch.arange(cap.prompt_len - 1, cap.seq_len - 1)  # the positions that predict the reply
        final = cap.raw.topk_ids[:, 0]  # the model's own top-1 there, from the scoring pass
        targets = torch.full((cap.seq_len,), -1, dtype=torch.int64)
        targets[pos] = final
        lens = logit_lens(teacher_forced_hidden_states(smollm2, cap.token_ids), smollm2, targets=targets, k=1,
                          positions=pos)
        # The last layer's lens is the output: same top-1 and probability as the scoring pass.
        assert torch.equal(lens.topk_ids[-1, :, 0], final)
        torch.testing.assert_close(lens.topk_probs[-1, :, 0], cap.raw.topk_logprobs[:, 0].exp(), atol=1e-4,
                                   rtol=1e-3)
        first += lens.target_rank[1:quarter + 1].flatten().tolist()
        last += lens.target_rank[layers - quarter + 1:].flatten().tolist()
    assert statistics.median(last) <= statistics.median(first) / 10, (statistics.median(first),
                                                                      statistics.median(last))

"""Token display strings: the one-call path equals ``tokenizer.decode([id])`` id by id."""

from __future__ import annotations

import copy

from inspector.capture.labels import _stock_decode, token_labels, token_strings


def per_id(tok, ids):
    return [tok.decode([i], clean_up_tokenization_spaces=False) for i in ids]


def test_every_gpt2_id_as_decode_gives_it(tokenizer):
    ids = list(range(len(tokenizer)))
    assert _stock_decode(tokenizer), "the real GPT-2 tokenizer should take the one-call path"
    got = token_strings(tokenizer, ids)
    assert got == per_id(tokenizer, ids)
    assert got[tokenizer.eos_token_id] == "<|endoftext|>" and "\ufffd" in got  # special and partial-byte tokens


def test_byte_tokenizer_and_overridden_decode_are_asked_id_by_id(byte_tiny, tokenizer):
    ids = list(range(len(byte_tiny.tokenizer)))
    assert token_strings(byte_tiny.tokenizer, ids) == per_id(byte_tiny.tokenizer, ids)
    odd = copy.copy(tokenizer)
    odd.__class__ = type("Odd", (type(tokenizer),), {"_decode": lambda self, token_ids, **kw: f"<{token_ids[0]}>"})
    assert not _stock_decode(odd)
    assert token_strings(odd, [5, 7]) == ["<5>", "<7>"]
    assert token_strings(tokenizer, []) == []


class Counting:
    def __init__(self):
        self.calls: list[int] = []

    def decode(self, ids, clean_up_tokenization_spaces=False):
        self.calls.extend(ids)
        return f"t{ids[0]}"


def test_labels_decode_each_id_once():
    tok, known = Counting(), {}
    assert token_labels(tok, [3, 1, 3], known) == {1: "t1", 3: "t3"}
    assert token_labels(tok, {3, 2}, known) == {2: "t2", 3: "t3"}
    assert tok.calls == [1, 3, 2]

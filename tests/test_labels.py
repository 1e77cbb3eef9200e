"""Token labels: each id decoded once, as ``tokenizer.decode([id])`` gives it."""

from __future__ import annotations

from inspector._capture.encode import token_labels


class Counting:
    def __init__(self):
        self.calls: list[int] = []

    def decode(self, ids, clean_up_tokenization_spaces=False):
        assert clean_up_tokenization_spaces is False  # spaces are kept as they are
        self.calls.extend(ids)
        return f"t{ids[0]}"


def test_labels_decode_each_id_once():
    tok = Counting()
    known: dict[int, str] = {}
    assert token_labels(tok, [3, 1, 3], known) == {1: "t1", 3: "t3"}
    assert token_labels(tok, {3, 2}, known) == {2: "t2", 3: "t3"}
    assert tok.calls == [1, 3, 2]
    assert token_labels(tok, []) == {}


def test_real_tokenizer_labels_keep_leading_spaces(tokenizer):
    ids = tokenizer(" hello world")["input_ids"]
    labels = token_labels(tokenizer, ids)
    assert [labels[i] for i in ids] == [" hello", " world"] and list(labels) == sorted(ids)

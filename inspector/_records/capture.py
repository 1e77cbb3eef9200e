"""Typed, validated records of one generation: per-step token scores, attention and metadata.

Dimension names used throughout the package:

* ``seq``   – positions of the final sequence (prompt followed by generated tokens), unpadded;
* ``step``  – generated steps; step ``i`` produced token ``token_ids[prompt_len + i]``;
* ``k``     – top-k candidates of a step, sorted by descending log-probability;
* ``layer``, ``head`` – transformer layer and attention head;
* ``query``, ``key``  – positions of the final sequence (``query == key == seq``).

Records hold tensors on the CPU. They are built once, from complete data
(:meth:`Capture.__post_init__` checks shapes), and never import drawing code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch

from inspector._records.layers import CaptureLens, HiddenStates, layer_fields_problem, layer_tensors
from inspector._records.layout import AttentionLayout

# Re-exported (``X as X``): records is the public home of the per-step records too.
from inspector._records.steps import (
    Candidate as Candidate,
    CaptureError as CaptureError,
    StepRecord as StepRecord,
    TokenScores as TokenScores,
    _check,
)

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

# "forced": a teacher-forced continuation (inspector._capture.forced), which did not stop, it was given
StopReason = Literal["eos", "stop_string", "length", "forced"]
STOP_REASONS: tuple[str, ...] = get_args(StopReason)


@dataclass
class CaptureMeta:
    """Where a capture came from. Everything here is JSON-serialisable.

    Attributes:
        model: hub id or local folder the model was loaded from.
        revision: model revision (commit hash or branch) where known.
        random_weights: True when the weights were randomly initialised (the text is meaningless).
        tokenizer: tokenizer name or folder.
        generation: every generation setting used (max_new_tokens, do_sample, temperature, ...).
        device: device the model ran on (``"cpu"``, ``"cuda:0"``, ``"mps"``).
        dtype: model dtype (``"float32"``, ...).
        attention_dtype: dtype attention weights are stored in.
        versions: library versions (torch, transformers, inspector, python).
        source: where the prompt came from (free text, DailyDialog split/dialogue/turn, ...).
        sequence_index: index among the sequences returned for the prompt (beam rank).
        sequence_score: beam score of the sequence (beam search only).
        extra: anything else a caller wants to keep.
        model_file: for weights read from a GGUF file, the file's ``file`` name, ``sha256``, ``quantization``
            type (``"Q4_1"``), ``architecture`` and ``dequantized`` (True); empty for other models.
        interventions: what was changed in the model's computation (:mod:`inspector._capture.interventions`),
            empty for an unchanged run: ``ablate`` (part names, expanded) with ``ablate_mode``; ``patch``
            (``[layer, position]`` pairs) with ``patch_source`` (its ``path``, ``model``, ``prompt_text``,
            ``prompt_len``, ``prompt_ids``, ``created`` and where the ``states`` came from).
    """

    model: str = ""
    revision: str | None = None
    random_weights: bool = False
    tokenizer: str = ""
    generation: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float32"
    attention_dtype: str = "float16"
    versions: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    sequence_index: int = 0
    sequence_score: float | None = None
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    model_file: dict[str, Any] = field(default_factory=dict)
    interventions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptureMeta:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Capture:
    """Everything recorded while generating one sequence.

    Attributes:
        token_ids: ``[seq]`` int64, prompt ids followed by generated ids (no padding).
        tokens: ``seq`` display strings, one per id (``tokenizer.decode([id])``).
        prompt_len: number of prompt tokens; generated step ``i`` is position ``prompt_len + i``.
        prompt_text: the prompt as given.
        generated_text: decoded generated tokens (special tokens skipped).
        stop_reason: why generation stopped: ``"eos"``, ``"stop_string"`` or ``"length"``; ``"forced"`` for a
            teacher-forced continuation (:data:`StopReason`).
        raw: statistics under the raw model logits (``[step]`` / ``[step, k]``).
        processed: statistics under the processed scores decoding used.
        attentions: ``[layer, head, query, key]`` over the final sequence, or ``None``
            when not kept. Causal: zero above the diagonal; each row sums to 1.
            Prompt rows come from the prefill pass, the row of generated token ``i``
            from the decoding step that consumed it.
        logits: ``[step, vocab]`` float32 raw logits (row ``i`` produced generated
            token ``i``), only when captured with ``keep_logits=True``.
        meta: provenance, see :class:`CaptureMeta`.
        labels: display string of every token id in ``token_ids`` and in the top-k lists.
        hidden_states: ``[layer + 1, seq, d_model]`` residual stream (entry 0 before the first layer,
            the last already normed, as ``output_hidden_states``; a tuple of ``[seq, d_i]`` when the
            last entry is narrower), exact like ``attentions``; with ``keep_hidden_states=True``.
        value_norms: ``[layer, head, key]`` float32, ``||(x_k W_V^h + b_V^h) W_O^h||`` (Kobayashi et al.
            2020), with ``keep_value_norms=True``; see :mod:`inspector._records.layers`.
        lens: the compact logit lens (:class:`~inspector._records.layers.CaptureLens`), with ``lens_k > 0``.
        step_attentions: ``[layer, head, step, key]`` over the final sequence, the attention rows of the
            generated tokens only (row ``i`` = query position ``prompt_len + i``), kept instead of
            ``attentions`` with ``attention_rows="generated"``.
        attention_layout: which layers and heads the attention axes hold and how
            (:class:`~inspector._records.layout.AttentionLayout`); the default is a full capture.
    """

    token_ids: torch.Tensor
    tokens: list[str]
    prompt_len: int
    prompt_text: str
    generated_text: str
    stop_reason: StopReason
    raw: TokenScores
    processed: TokenScores
    attentions: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    meta: CaptureMeta = field(default_factory=CaptureMeta)
    labels: dict[int, str] = field(default_factory=dict)
    hidden_states: HiddenStates | None = None
    value_norms: torch.Tensor | None = None
    lens: CaptureLens | None = None
    step_attentions: torch.Tensor | None = None
    attention_layout: AttentionLayout = field(default_factory=AttentionLayout)

    def __post_init__(self) -> None:
        seq = int(self.token_ids.shape[0]) if self.token_ids.dim() == 1 else -1
        _check(self.token_ids.dim() == 1, f"token_ids must be [seq], got {tuple(self.token_ids.shape)}")
        _check(len(self.tokens) == seq, f"tokens has {len(self.tokens)} entries, token_ids has {seq}")
        _check(0 < self.prompt_len <= seq, f"prompt_len={self.prompt_len} must be in 1..{seq}")
        steps = seq - self.prompt_len
        _check(self.stop_reason in STOP_REASONS, f"stop_reason {self.stop_reason!r} not in {STOP_REASONS}")
        for name in ("raw", "processed"):
            sc: TokenScores = getattr(self, name)
            _check(sc.num_steps == steps, f"{name} scores cover {sc.num_steps} steps, sequence has {steps}")
        if self.attentions is not None:
            a = self.attentions
            _check(
                a.dim() == 4 and a.shape[2] == seq and a.shape[3] == seq,
                f"attentions must be [layer, head, {seq}, {seq}], got {tuple(a.shape)}",
            )
        _check_layout(self.attention_layout, self.attentions, self.step_attentions, steps, seq)
        if self.logits is not None:
            _check(
                self.logits.dim() == 2 and self.logits.shape[0] == steps,
                f"logits must be [step={steps}, vocab], got {tuple(self.logits.shape)}",
            )
        att_shape = () if self.attentions is None else tuple(self.attentions.shape)
        problem = layer_fields_problem(self.hidden_states, self.value_norms, self.lens, seq, att_shape)
        _check(problem is None, str(problem))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (and deep-copied) with compact tensors: a capture fresh from a batch holds views of the
        batch's recording buffer (no copy while assembling), and pickling a view would write the whole buffer."""
        state = dict(self.__dict__)
        for name in ("attentions", "step_attentions", "hidden_states", "value_norms"):
            value = state.get(name)
            if isinstance(value, tuple):
                state[name] = tuple(_compact(t) for t in value)
            elif isinstance(value, torch.Tensor):
                state[name] = _compact(value)
        return state

    # ----------------------------------------------------------------- sizes
    @property
    def seq_len(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def num_steps(self) -> int:
        return self.seq_len - self.prompt_len

    @property
    def num_layers(self) -> int:
        return 0 if self.attentions is None else int(self.attentions.shape[0])

    @property
    def num_heads(self) -> int:
        return 0 if self.attentions is None else int(self.attentions.shape[1])

    @property
    def generated_ids(self) -> torch.Tensor:
        """``[step]`` ids of the generated tokens."""
        return self.token_ids[self.prompt_len :]

    @property
    def generated_tokens(self) -> list[str]:
        return self.tokens[self.prompt_len :]

    @property
    def chosen_probs(self) -> torch.Tensor:
        """``[step]`` probability of each chosen token under the raw logits."""
        return self.raw.chosen_logprob.exp()

    @property
    def nbytes(self) -> int:
        """Bytes held by this capture's tensors."""
        total = self.token_ids.numel() * self.token_ids.element_size()
        for t in self.tensors().values():
            total += t.numel() * t.element_size()
        return total

    # --------------------------------------------------------------- views
    def label(self, token_id: int) -> str:
        """Display string of a token id seen in this capture (``<id>`` when unknown)."""
        return self.labels.get(int(token_id), f"<{int(token_id)}>")

    def step(self, i: int) -> StepRecord:
        """A readable record of generated step ``i`` (negative indices count from the end)."""
        n = self.num_steps
        if not -n <= i < n:
            raise IndexError(f"step {i} out of range: this capture has {n} generated steps (0..{n - 1})")
        i %= n
        top = tuple(
            Candidate(int(tid), self.label(tid), float(lp))
            for tid, lp in zip(self.raw.topk_ids[i].tolist(), self.raw.topk_logprobs[i].tolist(), strict=True)
        )
        pos = self.prompt_len + i
        return StepRecord(
            step=i,
            position=pos,
            token_id=int(self.token_ids[pos]),
            token=self.tokens[pos],
            logprob=float(self.raw.chosen_logprob[i]),
            rank=int(self.raw.chosen_rank[i]),
            entropy=float(self.raw.entropy[i]),
            top=top,
            processed_logprob=float(self.processed.chosen_logprob[i]),
            processed_rank=int(self.processed.chosen_rank[i]),
            processed_entropy=float(self.processed.entropy[i]),
        )

    @property
    def steps(self) -> list[StepRecord]:
        """All generated steps as :class:`StepRecord` objects."""
        return [self.step(i) for i in range(self.num_steps)]

    # ------------------------------------------------------------ attention
    def require_attentions(self) -> torch.Tensor:
        """``[layer, head, query, key]`` of every layer and head (a head mean counts as one head).

        Raises ``CaptureError`` saying what to capture instead when attention was not kept, or kept
        for some layers/heads or for the generated rows only (use ``attentions`` /
        ``step_attentions`` with ``attention_layout`` directly for those).
        """
        lay = self.attention_layout
        if self.step_attentions is not None:
            raise CaptureError(
                "this capture kept only the generated tokens' attention rows ([layer, head, step, key], "
                "capture.step_attentions); this view needs every row: capture again with attention_rows='all' "
                "(CLI: --attention-rows all)")
        if self.attentions is not None and not lay.all_layers_and_heads:
            raise CaptureError(
                f"this capture kept attention for {lay.describe()} only; this view needs every layer and head: "
                "capture again without layers=/heads= (CLI: without --layers/--heads)")
        if self.attentions is None:
            raise CaptureError(
                "this capture kept no attention weights; capture again with attention kept "
                "(inspector run --attention full, or model.generate(...) defaults)"
            )
        return self.attentions

    def require_value_norms(self) -> torch.Tensor:
        if self.value_norms is None:
            raise CaptureError("this capture kept no value norms; capture again with keep_value_norms=True "
                               "(CLI: --keep-value-norms)")
        return self.value_norms

    def aggregate(self, layers: str | int | None = "mean", heads: str | int | None = "mean") -> torch.Tensor:
        """Attention reduced over layers and/or heads; see :func:`inspector._aggregate.aggregate_attention`."""
        from inspector._aggregate import aggregate_attention

        return aggregate_attention(self.require_attentions(), layers=layers, heads=heads)

    def stacked_mean(self, step: int | None = None) -> torch.Tensor:
        """The notebook's ``torch.stack(output.attentions[step]).mean(dim=0)`` for one prompt.

        Returns ``[head, query, key]``. With ``step=None`` it covers the whole final
        sequence; with ``step=s`` it is exactly what the notebook's ``use_cache=False``
        step ``s`` returned: the first ``prompt_len + s`` rows and columns.
        """
        from inspector._aggregate import stacked_mean

        return stacked_mean(self.require_attentions(), prompt_len=self.prompt_len, step=step)

    # ------------------------------------------------------------- storage
    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the capture by storage name (``token_ids`` excluded)."""
        out = {**self.raw.tensors("raw"), **self.processed.tensors("processed")}
        if self.attentions is not None:
            out["attentions"] = self.attentions
        if self.step_attentions is not None:
            out["step_attentions"] = self.step_attentions
        if self.logits is not None:
            out["logits"] = self.logits
        return {**out, **layer_tensors(self.hidden_states, self.value_norms, self.lens)}

    def to_parts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The storable form: tensors by storage name (``token_ids`` included) and a JSON-serialisable document."""
        tensors = {"token_ids": self.token_ids, **self.tensors()}
        doc = {
            "tokens": self.tokens,
            "prompt_len": self.prompt_len,
            "prompt_text": self.prompt_text,
            "generated_text": self.generated_text,
            "stop_reason": self.stop_reason,
            "labels": {str(k): v for k, v in self.labels.items()},
            "meta": self.meta.to_dict(),
        }
        if not self.attention_layout.is_full:  # absent in full captures, so their files stay as before
            doc["attention_layout"] = self.attention_layout.to_dict()
        return tensors, doc

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` atomically (safetensors + JSON metadata); see :func:`inspector._store.save_capture`."""
        import inspector._fileformat as fileformat

        tensors, doc = self.to_parts()
        return fileformat.write(path, tensors, doc)

    def __repr__(self) -> str:
        kept = self.attentions if self.attentions is not None else self.step_attentions
        att = "none" if kept is None else "x".join(map(str, kept.shape))
        if not self.attention_layout.is_full:
            att += f" ({self.attention_layout.describe()})"
        return (
            f"Capture(prompt_len={self.prompt_len}, steps={self.num_steps}, stop={self.stop_reason!r}, "
            f"attentions={att}, model={self.meta.model!r}, random_weights={self.meta.random_weights}, "
            f"text={self.generated_text[:40]!r})"
        )


def _compact(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or a copy when it is a view of a larger buffer."""
    return t.clone() if t.untyped_storage().nbytes() > t.numel() * t.element_size() else t


def _check_layout(lay: AttentionLayout, att: torch.Tensor | None, rows: torch.Tensor | None, steps: int,
                  seq: int) -> None:
    """The attention tensors agree with the layout: which field holds them, and the sizes of their axes."""
    _check(att is None or rows is None, "a capture holds attentions or step_attentions, not both")
    kept = att if att is not None else rows
    if rows is not None:
        _check(lay.rows == "generated", "step_attentions needs an attention layout with rows='generated'")
        _check(rows.dim() == 4 and tuple(rows.shape[2:]) == (steps, seq),
               f"step_attentions must be [layer, head, {steps}, {seq}], got {tuple(rows.shape)}")
    if att is not None:
        _check(lay.rows == "all", "attentions with rows='generated' belong in step_attentions")
    if kept is None:
        return
    if lay.layers is not None:
        _check(int(kept.shape[0]) == len(lay.layers),
               f"attention holds {int(kept.shape[0])} layers, its layout lists {len(lay.layers)}")
    if lay.head_reduce == "mean":
        _check(int(kept.shape[1]) == 1, f"a head-mean attention has one head entry, got {int(kept.shape[1])}")
    elif lay.heads is not None:
        _check(int(kept.shape[1]) == len(lay.heads),
               f"attention holds {int(kept.shape[1])} heads, its layout lists {len(lay.heads)}")

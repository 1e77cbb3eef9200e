"""A generation's prompt KV cache, kept so that teacher-forced passes after the same prompts skip their prefill.

A corpus run with reference scoring generates from each turn's (conditioned) prompt and then scores
the reference reply after that prompt and after the plain one. Both scoring passes begin with the
very tokens the generation's prefill already ran through the model; :class:`PromptCache` hands that
work on instead of repeating it (see :func:`inspector._capture.forced_pair.score_token_pairs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from inspector._compat import croppable_dynamic_cache


@dataclass
class PromptCache:
    """The KV cache left by one batched ``generate`` call, and the left-padded prompts it began with.

    Attributes:
        cache: the model's cache after generation (a transformers ``DynamicCache``): the prompt
            positions ``[0, width)`` followed by the generated ones, which :meth:`take` crops off.
        input_ids: ``[row, width]`` the prompts' token ids, left-padded to ``width``.
        attention_mask: ``[row, width]`` 1 on real prompt tokens, 0 on the left padding.

    Single use: :meth:`take` crops and selects the cache in place.
    """

    cache: Any
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def width(self) -> int:
        """The padded prompt length ``p_max``."""
        return int(self.input_ids.shape[1])

    def prompt_ids(self, row: int) -> list[int]:
        """The real (unpadded) prompt token ids of ``row``."""
        return [int(t) for t in self.input_ids[row][self.attention_mask[row].bool()].tolist()]

    def reusable(self) -> bool:
        """Whether the cache can be cropped and its rows selected (plain full-attention dynamic layers only)."""
        return croppable_dynamic_cache(self.cache)

    def take(self, rows: Sequence[int], keep: int) -> tuple[Any, torch.Tensor, list[int]]:
        """The cache of ``rows`` over the first ``keep`` padded prompt positions (in place).

        Returns:
            ``(cache, mask, lengths)``: the cropped cache, its attention mask ``[len(rows), keep]``
            and the number of real tokens each row keeps.
        """
        if not 0 < keep <= self.width:
            raise ValueError(f"keep must be in 1..{self.width}, got {keep}")
        extra = int(self.cache.get_seq_length()) - keep
        if extra > 0:
            self.cache.crop(-extra)
        index = torch.tensor(list(rows), dtype=torch.long)
        if list(rows) != list(range(int(self.input_ids.shape[0]))):
            self.cache.batch_select_indices(index.to(self.cache.layers[0].keys.device))
        mask = self.attention_mask[index, :keep]
        return self.cache, mask, [int(n) for n in mask.sum(-1).tolist()]

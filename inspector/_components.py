"""The names of a model's parts, one spelling everywhere: attribution, ablation, figures and the dashboard.

=================  ==================================================================
``"embed"``        the token embeddings
``"pos"``          the learned position embeddings (models that have them, e.g. GPT-2)
``"L3.H5"``        head 5 of layer 3: its slice of the attention output, before the output projection
``"L3.H*"``        every head of layer 3 (a pattern, expanded when parsed)
``"L3.attn"``      the whole attention block of layer 3
``"L3.attn.bias"`` the bias of layer 3's attention output projection (a term of its own in attributions)
``"L3.mlp"``       the MLP of layer 3 (its biases included)
``"final_norm.bias"`` the final norm's offset term; ``"unembed.bias"`` the output layer's bias
=================  ==================================================================

Layers and heads count from 0, as everywhere in the package.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

EMBED = "embed"
POSITION = "pos"
FINAL_NORM_BIAS = "final_norm.bias"
UNEMBED_BIAS = "unembed.bias"

#: What ``ablate=`` accepts, for messages and ``--help``.
ABLATE_HELP = "L<layer>.H<head> (one head), L<layer>.H* (every head of a layer), L<layer>.attn or L<layer>.mlp"

ComponentKind = Literal["head", "attn", "mlp"]
_PATTERN = re.compile(r"^L(\d{1,6})\.(?:H(\d{1,6}|\*)|(attn|mlp))$")


def head_name(layer: int, head: int) -> str:
    """``"L3.H5"``."""
    return f"L{layer}.H{head}"


def attention_name(layer: int) -> str:
    """``"L3.attn"``."""
    return f"L{layer}.attn"


def attention_bias_name(layer: int) -> str:
    """``"L3.attn.bias"``."""
    return f"L{layer}.attn.bias"


def mlp_name(layer: int) -> str:
    """``"L3.mlp"``."""
    return f"L{layer}.mlp"


@dataclass(frozen=True)
class Component:
    """One switchable part of a model: a head, a whole attention block or an MLP.

    Attributes:
        kind: ``"head"``, ``"attn"`` or ``"mlp"``.
        layer: its layer, from 0.
        head: its head, from 0, for ``kind == "head"``; else ``None``.
    """

    kind: ComponentKind
    layer: int
    head: int | None = None

    @property
    def name(self) -> str:
        """The part's name (``"L3.H5"``, ``"L3.attn"``, ``"L3.mlp"``)."""
        if self.kind == "head":
            assert self.head is not None
            return head_name(self.layer, self.head)
        return attention_name(self.layer) if self.kind == "attn" else mlp_name(self.layer)


def parse_components(spec: str | Sequence[str], num_layers: int, num_heads: int) -> tuple[Component, ...]:
    """Parts named by ``spec`` (a list of names, or one comma-separated string), in order, without repeats.

    ``"L7.H*"`` expands to every head of layer 7. Bounds are checked on the numbers as written, before
    anything is expanded.

    Raises:
        ValueError: a name that is not one of the forms above, or a layer or head the model does not have;
            the message names it and says what the model has.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    found: list[Component] = []
    for raw in items:
        if not isinstance(raw, str):
            raise ValueError(f"part names are strings such as 'L5.H3', got {raw!r}")
        text = raw.strip()
        if not text:
            continue
        match = _PATTERN.match(text)
        if match is None:
            raise ValueError(f"unknown part {text!r}: name parts as {ABLATE_HELP}")
        layer = int(match.group(1))
        if layer >= num_layers:
            raise ValueError(f"part {text!r}: the model has layers 0-{num_layers - 1}")
        head_text, block = match.group(2), match.group(3)
        if block is not None:
            found.append(Component(block, layer))  # type: ignore[arg-type]
        elif head_text == "*":
            found.extend(Component("head", layer, head) for head in range(num_heads))
        else:
            head = int(head_text)
            if head >= num_heads:
                raise ValueError(f"part {text!r}: each layer has heads 0-{num_heads - 1}")
            found.append(Component("head", layer, head))
    return tuple(dict.fromkeys(found))

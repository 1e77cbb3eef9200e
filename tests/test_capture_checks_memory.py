"""The NaN/inf check on attention reads a capture's view of the recording buffer without copying it."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from inspector._capture.checks import NonFiniteError, check_finite_attention


def _allocated(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((e.cpu_memory_usage for e in prof.events()), default=0)


def test_check_of_a_buffer_view_allocates_no_copy():
    buffer = torch.rand(1, 4, 3, 65, 65).half()  # [row, layer, head, query, key], one row wider than used
    view = buffer[0, :, :, :64, :64]
    assert not view.is_contiguous()
    # before: torch.aminmax(view) copied the whole view (about 98 KB here, 261 MB for a 960+16-token capture)
    assert _allocated(lambda: check_finite_attention(view, 10, "prompt 0")) < view.numel() * view.element_size() / 4


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_still_names_layer_and_position(bad):
    att = torch.rand(3, 2, 8, 9)[:, :, :, :8]
    att[1, 0, 5, 2] = bad
    with pytest.raises(NonFiniteError, match="layer 1, query position 5 .the row of generated token 1"):
        check_finite_attention(att, 4, "prompt 0")
    check_finite_attention(torch.rand(3, 2, 8, 9)[:, :, :, :8], 4, "prompt 0")  # finite: no error

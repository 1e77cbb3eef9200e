"""Where each row stopped, read after ``generate`` from the sequences (EOS) and the stop-string steps."""

from __future__ import annotations

import torch

from inspector._capture.recorder import Recorder
from inspector._capture.settings import GenerationSettings
from inspector._capture.steps import EOS, LENGTH, STOP_STRING


def test_first_eos_or_stop_string_whichever_came_first(byte_tiny):
    settings = GenerationSettings(max_new_tokens=5).selected(byte_tiny.num_layers, byte_tiny.num_heads, byte_tiny.name)
    rec = Recorder(byte_tiny, settings, rows=5, p_max=2, stopper=None)
    eos = int(rec.eos_ids[0])
    x = 7  # any other token
    sequences = torch.tensor([
        [x, x, x, x, x, x, x],        # never stopped
        [x, x, x, eos, eos, eos, eos],  # EOS at step 1; padded with EOS afterwards
        [x, x, x, x, x, x, eos],      # a stop string at step 2, EOS later
        [x, x, eos, x, x, x, x],      # EOS at step 0 and a stop string at step 0: EOS
        [x, x, x, x, x, x, x],        # a stop string at the last step
    ])
    rec._stop_string_step = torch.tensor([-1, -1, 2, 0, 4])
    rec.finish(sequences)
    assert rec.finish_step.tolist() == [-1, 1, 2, 0, 4]
    assert rec.finish_reason.tolist() == [LENGTH, EOS, STOP_STRING, EOS, STOP_STRING]


def test_no_eos_ids(byte_tiny):
    settings = GenerationSettings(max_new_tokens=3).selected(byte_tiny.num_layers, byte_tiny.num_heads, byte_tiny.name)
    rec = Recorder(byte_tiny, settings, rows=1, p_max=1, stopper=None)
    rec.eos_ids = rec.eos_ids[:0]
    rec.finish(torch.tensor([[5, 6, 7, 8]]))
    assert rec.finish_step.tolist() == [-1] and rec.finish_reason.tolist() == [LENGTH]

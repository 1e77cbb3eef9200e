"""Generation with capture: per-step token scores and per-layer/head attention from one cached ``generate``.

The flow, one module each:

* :mod:`~inspector._capture.settings` - :class:`GenerationSettings`, their bounds, help and CLI flags;
* :mod:`~inspector._capture.selection` - ``layers=``/``heads=`` and ``memory_budget`` parsed and resolved;
* :mod:`~inspector._capture.budget` - a capture's size estimated before generation, and the memory budget;
* :mod:`~inspector._capture.decoding` - settings -> ``GenerationConfig`` and sampling warpers;
* :mod:`~inspector._capture.encode` - prompts checked, tokenized, left-padded; the context budget;
* :mod:`~inspector._capture.recorder` - hooks, processor, stopping criterion, per-step statistics;
* :mod:`~inspector._capture.steps` - the per-step log and its stacked ``[row, step, ...]`` record;
* :mod:`~inspector._capture.beams` - beam search: gathering through ``beam_indices``;
* :mod:`~inspector._capture.checks` - NaN/inf checks and :class:`NonFiniteError`;
* :mod:`~inspector._capture.assemble` - stacked steps -> :class:`~inspector._records.capture.Capture` objects;
* :mod:`~inspector._capture.engine` - :func:`generate`: one ``generate`` call and the extra cached step;
* :mod:`~inspector._capture.forced` - :func:`score`: a given continuation teacher-forced in one pass.

Each name is imported from the module that defines it; the public ones are reached through
:class:`inspector.InspectorModel` (``model.generate``, ``model.score``) and the root package.
"""

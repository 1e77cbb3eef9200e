"""What a capture holds, as validated dataclasses: the capture and its metadata (:mod:`.capture`), the
per-step token scores (:mod:`.steps`), the per-layer tensors (:mod:`.layers`) and the attention layout
(:mod:`.layout`). Import each name from the module that defines it; the public ones are also at the
package root (``inspector.Capture``).
"""

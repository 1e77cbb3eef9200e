"""Device parity check: the same short capture on the CPU and on another device.

Used by ``inspector doctor``. The device's capture is compared with a
teacher-forced CPU forward pass over the device's own sequence, so numbers are
compared position by position even where greedy choices diverge.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from inspector._capture.checks import NonFiniteError
from inspector._devices import available_devices, resolve_device
from inspector._model import load_model

ATTENTION_TOL = 1e-3
LOGIT_TOL = 1e-2


@torch.no_grad()
def _reference(model: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = model(input_ids=ids[None], output_attentions=True, use_cache=False)
    att = torch.stack([a[0] for a in out.attentions]).float()  # [layer, head, seq, seq]
    return att, out.logits[0].float()


def _timed_capture(model: Any, prompt: str, max_new_tokens: int) -> tuple[Any, float]:
    model.generate(prompt, max_new_tokens=2)  # warm-up (kernels, allocator)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    cap = model.generate(prompt, max_new_tokens=max_new_tokens, attention_dtype=torch.float32, keep_logits=True)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return cap, time.perf_counter() - t0


def parity_check(
    model: str = "gpt2",
    device: str = "auto",
    random_weights: bool = False,
    prompt: str = "User: hey how are you? \nAgent:",
    max_new_tokens: int = 16,
) -> dict[str, Any]:
    """Capture on the CPU and on ``device``; return a JSON-serialisable report.

    Keys: ``device``, ``available``, ``ok``, ``same_tokens``, ``max_attention_diff``,
    ``max_logit_diff``, ``nan`` (per device), ``seconds`` (per device), ``notes``.
    """
    dev = resolve_device(device)
    report: dict[str, Any] = {
        "model": model,
        "random_weights": random_weights,
        "device": str(dev),
        "available": available_devices(),
        "notes": [],
        "seconds": {},
        "nan": {},
    }
    if dev.type == "cpu":
        report["notes"].append("no accelerator selected or found: the CPU is compared with itself")
    cpu = load_model(model, device="cpu", random_weights=random_weights)
    other = load_model(model, device=dev, random_weights=random_weights)
    caps = {}
    target = str(dev) if dev.type != "cpu" else "cpu (second copy)"
    report["device"] = target
    for name, loaded in (("cpu", cpu), (target, other)):
        try:
            caps[name], report["seconds"][name] = _timed_capture(loaded, prompt, max_new_tokens)
            report["nan"][name] = False
        except NonFiniteError as exc:
            report["nan"][name] = True
            report["notes"].append(f"{name}: {exc}")
    if len(caps) < 2:
        report.update(ok=False, same_tokens=None, max_attention_diff=None, max_logit_diff=None)
        return report
    dcap = caps[target]
    report["same_tokens"] = bool(torch.equal(caps["cpu"].token_ids, dcap.token_ids))
    if not report["same_tokens"]:
        report["notes"].append("greedy tokens differ between devices; numbers below compare the same sequence")
    ref_att, ref_logits = _reference(cpu.model, dcap.token_ids)
    p = dcap.prompt_len
    report["max_attention_diff"] = float((ref_att - dcap.attentions.float()).abs().max())
    report["max_logit_diff"] = float((ref_logits[p - 1 : -1] - dcap.logits.float()).abs().max())
    report["ok"] = (
        report["max_attention_diff"] <= ATTENTION_TOL
        and report["max_logit_diff"] <= LOGIT_TOL
        and not any(report["nan"].values())
    )
    return report


def format_parity(report: dict[str, Any]) -> str:
    """A readable parity report."""
    lines = [
        f"model: {report['model']} ({'random' if report['random_weights'] else 'pretrained'} weights)",
        f"devices available: {', '.join(report['available'])}; compared: cpu vs {report['device']}",
    ]
    for name, secs in report["seconds"].items():
        lines.append(f"  capture time on {name}: {secs:.3f} s")
    for name, bad in report["nan"].items():
        lines.append(f"  NaN/inf on {name}: {'YES' if bad else 'no'}")
    if report.get("max_attention_diff") is not None:
        lines.append(f"  same greedy tokens: {'yes' if report['same_tokens'] else 'no'}")
        lines.append(f"  max |attention diff|: {report['max_attention_diff']:.3g} (tolerance {ATTENTION_TOL})")
        lines.append(f"  max |logit diff|:     {report['max_logit_diff']:.3g} (tolerance {LOGIT_TOL})")
    lines += [f"  note: {n}" for n in report["notes"]]
    lines.append("PARITY OK" if report["ok"] else "PARITY FAILED")
    return "\n".join(lines)

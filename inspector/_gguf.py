"""GGUF model files: identified by their hash, converted once into a cached Hugging Face folder.

transformers reads a ``.gguf`` file (``from_pretrained(folder, gguf_file=NAME)``, with the ``gguf``
package) and de-quantises every tensor, which takes tens of seconds. :func:`converted_folder` does that
once per file and writes the result, safetensors weights in float32 plus the config, the generation
config and the tokenizer files, into ``<cache>/gguf/<sha256>`` (see :func:`cache_root`). Later loads
read that folder like any local model folder.

The folder is written under a temporary name and renamed into place when complete, so two processes
converting the same file at once both succeed and leave one copy, and a killed conversion leaves no
folder that looks complete (its temporary is removed by the next conversion).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inspector._atomic import current_umask, pid_alive

#: The suffix that marks a model file rather than a folder or hub id.
GGUF_SUFFIX = ".gguf"
#: Environment variable naming the cache folder (else ``$XDG_CACHE_HOME/inspector``, else ``~/.cache/inspector``).
CACHE_ENV = "INSPECTOR_CACHE"
#: The file written last into a converted folder: what it was converted from (its presence marks it complete).
INFO_FILE = "inspector-gguf.json"
#: The key of :attr:`inspector._handle.ModelHandle.info` (and of a capture's ``meta.model_file``) for the file's info.
GGUF_INFO_KEY = "gguf"
#: What to install for reading GGUF files (the project's ``[gguf]`` extra).
GGUF_PACKAGES = "gguf accelerate"
_CHUNK = 1 << 20


class GGUFError(ValueError):
    """A GGUF file that cannot be read or converted; the message says what to change."""


@dataclass(frozen=True)
class GGUFInfo:
    """Where a model's weights came from when they were read from a GGUF file.

    Attributes:
        file: the file's name (``SmolLM2-135M-Instruct.Q4_1.gguf``).
        sha256: hex SHA-256 of the file's bytes (the cache key).
        quantization: the file's quantisation type as GGUF names it (``"Q4_1"``, ``"F16"``, ...).
        dequantized: True: the weights were de-quantised to floating point when read (always, here).
        architecture: the architecture the file declares (``"llama"``).
    """

    file: str
    sha256: str
    quantization: str
    dequantized: bool = True
    architecture: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GGUFInfo:
        return cls(str(data["file"]), str(data["sha256"]), str(data["quantization"]),
                   bool(data.get("dequantized", True)), str(data.get("architecture", "")))


def _clause(text: str) -> str:
    """``text`` without a final full stop, to be followed by more of a sentence."""
    return text.strip().rstrip(".").rstrip()


def is_gguf_path(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` names a GGUF file (by its suffix; the file need not exist)."""
    return str(name).lower().endswith(GGUF_SUFFIX)


def cache_root() -> Path:
    """The user's cache folder for inspector: ``$INSPECTOR_CACHE``, else ``$XDG_CACHE_HOME/inspector``,
    else ``~/.cache/inspector``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "inspector"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _need_gguf_package() -> Any:
    try:
        import gguf
    except ImportError as exc:
        raise GGUFError(
            f"reading a GGUF file needs the packages {GGUF_PACKAGES!r}: pip install {GGUF_PACKAGES} "
            "(or pip install 'inspector[gguf]')"
        ) from exc
    return gguf


def read_header(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(architecture, quantization)`` declared in a GGUF file's header (``"llama"``, ``"Q4_1"``).

    Raises:
        GGUFError: the ``gguf`` package is missing, or the file is not a readable GGUF file.
    """
    gguf = _need_gguf_package()
    try:
        reader = gguf.GGUFReader(str(path))
        arch_field = reader.get_field("general.architecture")
        type_field = reader.get_field("general.file_type")
        arch = str(arch_field.contents()) if arch_field is not None else ""
        quant = ""
        if type_field is not None:
            code = int(type_field.contents())
            quant = gguf.LlamaFileType(code).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (ValueError, OSError, KeyError, IndexError) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GGUFError(
            f"{str(path)!r} is not a readable GGUF file ({why}): pass a complete model file in the GGUF format "
            "(as llama.cpp's converter writes it), a model folder or a hub id"
        ) from exc
    return arch, quant or "unknown"


def converted_folder_for(sha256: str) -> Path:
    """The cache folder a file with this hash converts into (existing or not)."""
    return cache_root() / "gguf" / sha256


def _read_info(folder: Path) -> GGUFInfo | None:
    try:
        return GGUFInfo.from_dict(json.loads((folder / INFO_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove_dead_temporaries(parent: Path) -> None:
    """Temporary folders of conversions on this host whose process is gone (killed mid-conversion)."""
    host = socket.gethostname()
    for entry in parent.glob(".*.tmp"):
        parts = entry.name[1:-len(".tmp")].split("@")
        if len(parts) != 3 or parts[1] != host or not parts[2].split("-")[0].isdigit():
            continue
        if not pid_alive(int(parts[2].split("-")[0])):
            shutil.rmtree(entry, ignore_errors=True)


def _write_converted(path: Path, target: Path, info: GGUFInfo, progress: bool) -> None:
    """De-quantise ``path`` with transformers and write it as a model folder into ``target`` (which exists)."""
    import torch
    from safetensors.torch import save_model
    from tqdm import tqdm  # plain text: no notebook widget (tqdm.auto warns where ipywidgets is absent)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=4, desc=f"converting {path.name} (once)", unit="step", disable=not progress)
    try:
        steps.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        steps.update()
        steps.set_postfix_str("de-quantising weights")
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                                     attn_implementation="eager")
        steps.update()
        steps.set_postfix_str("writing weights")
        save_model(model, str(target / "model.safetensors"), metadata={"format": "pt"})
        steps.update()
        steps.set_postfix_str("writing config and tokenizer")
        config = model.config
        # the loaded model is marked quantised; the folder holds plain float weights
        with contextlib.suppress(AttributeError):
            del config.quantization_config
        config.save_pretrained(target)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(target)
        tokenizer.save_pretrained(target)
        (target / INFO_FILE).write_text(json.dumps(info.to_dict(), indent=1) + "\n", encoding="utf-8")
        mode = 0o666 & ~current_umask()
        for written in target.iterdir():  # some writers make their files private (0600) whatever the umask
            written.chmod(mode)
        steps.update()
    finally:
        steps.close()


def _convert_into(src: Path, final: Path, info: GGUFInfo, progress: bool) -> None:
    """Convert ``src`` into a temporary folder beside ``final``, then rename it into place (atomically).

    Raises:
        OSError: the cache folder could not be written.
        GGUFError: transformers could not read the file.
    """
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temporaries(parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{info.sha256}@{socket.gethostname()}@{os.getpid()}-", suffix=".tmp",
                                dir=parent))
    try:
        tmp.chmod(0o777 & ~current_umask())
        try:
            _write_converted(src, tmp, info, progress)
        except (ValueError, KeyError, IndexError, TypeError, RuntimeError) as exc:
            why = _clause(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            raise GGUFError(
                f"could not convert GGUF file {str(src)!r} with transformers: {why}. Pass a GGUF file of an "
                "architecture transformers reads (llama, mistral, qwen2, gemma, phi3, ...), or the original model "
                "folder or hub id"
            ) from exc
        try:
            os.rename(tmp, final)
        except OSError:
            if _read_info(final) is not None:  # another process finished the same conversion first: keep its copy
                return
            if not final.exists():
                raise
            # a folder without its info file is no conversion's (renames are atomic): damaged, so replaced
            aside = tmp.with_name(tmp.name.removesuffix(".tmp") + "-damaged.tmp")
            with contextlib.suppress(FileNotFoundError):
                os.rename(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if _read_info(final) is None:
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def converted_folder(path: str | os.PathLike[str], progress: bool = True) -> tuple[Path, GGUFInfo]:
    """The cached model folder for GGUF file ``path``, converting it first if needed.

    Returns ``(folder, info)``; ``folder`` loads with ``from_pretrained`` like any local model folder.

    Raises:
        GGUFError: the file is missing or unreadable, transformers cannot read it, the cache folder cannot be
            written, or the ``gguf`` package is needed and missing.
    """
    src = Path(path).expanduser()
    if not src.is_file():
        raise GGUFError(f"GGUF file {str(src)!r} does not exist (or is not a file)")
    sha = file_sha256(src)
    final = converted_folder_for(sha)
    cached = _read_info(final)
    if cached is not None:
        return final, GGUFInfo(src.name, sha, cached.quantization, True, cached.architecture)
    arch, quant = read_header(src)
    info = GGUFInfo(src.name, sha, quant, True, arch)
    try:
        _convert_into(src, final, info, progress)
    except OSError as exc:
        raise GGUFError(
            f"could not write the converted copy of GGUF file {str(src)!r} into {str(final.parent)!r}: "
            f"{_clause(exc.strerror or str(exc) or type(exc).__name__)}. Free space there, or set {CACHE_ENV} to "
            "a writable folder"
        ) from exc
    return final, info

"""Which models are installed, and :func:`load_backend`: a name or folder in, a backend out.

Installed models are the shipped native default (name ``default``) and every folder in the
models directory (``$TENKU_MODELS``, else ``~/.local/share/tenku/models``) that holds a
``pipeline.json`` (a native tenku model) or a ``model_index.json`` (a diffusers model). A
model's name is its folder's name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from tenku.pipelines.backend import Backend, BackendOptions, NativeBackend
from tenku.pipelines.pipeline import default_model_path

DEFAULT_NAME = "default"
NATIVE_FILE = "pipeline.json"
DIFFUSERS_FILE = "model_index.json"


def models_dir() -> Path:
    """``$TENKU_MODELS`` if set, else ``~/.local/share/tenku/models``."""
    env = os.environ.get("TENKU_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".local/share/tenku/models"


@dataclass(frozen=True)
class InstalledModel:
    """One model folder tenku can load by name."""

    name: str  # what `--model NAME` takes
    path: Path  # the folder
    kind: str  # "native" or "diffusers"
    family: str  # "native", "wan", "ltx", "cogvideox" (or "unknown: CLASS")
    size_bytes: int  # the folder's weights on disk


def _describe(name: str, path: Path) -> InstalledModel | None:
    if (path / NATIVE_FILE).is_file():
        return InstalledModel(name, path, "native", "native", _size(path))
    if (path / DIFFUSERS_FILE).is_file():
        from tenku.pipelines.diffusers_backend import CLASS_FAMILY  # no diffusers import

        try:
            cls = json.loads((path / DIFFUSERS_FILE).read_text()).get("_class_name", "?")
        except (OSError, ValueError):
            cls = "unreadable model_index.json"
        family = CLASS_FAMILY.get(cls, f"unknown: {cls}")
        return InstalledModel(name, path, "diffusers", family, _size(path))
    return None


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def installed_models() -> list[InstalledModel]:
    """The shipped default (or ``$TENKU_MODEL``) first, then the models directory by name."""
    found = [_describe(DEFAULT_NAME, default_model_path())]
    root = models_dir()
    if root.is_dir():
        found += [_describe(p.name, p) for p in sorted(root.iterdir()) if p.is_dir()]
    return [m for m in found if m is not None]


def resolve_model(model: str | Path | None) -> Path:
    """The folder for ``model``: None -> the default; an existing folder; else an installed
    model's name. Raises FileNotFoundError listing what is installed."""
    if model is None or str(model) == DEFAULT_NAME:
        return default_model_path()
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    for found in installed_models():
        if found.name == str(model):
            return found.path
    names = ", ".join(m.name for m in installed_models()) or "none"
    raise FileNotFoundError(
        f"model: {model} is neither a folder nor an installed model (installed: {names}; "
        f"models directory: {models_dir()}, see `tenku models`)"
    )


def load_backend(
    model: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: str | None = None,
    offload: str = "none",
    vae_tiling: bool = False,
    vae_slicing: bool = False,
    compile: bool = False,
    attention: str = "auto",
) -> Backend:
    """Load ``model`` (None: the shipped native default; a folder; an installed name).

    A folder with ``pipeline.json`` is a native model (:class:`NativeBackend`); one with
    ``model_index.json`` a diffusers model, its family from ``_class_name``
    (:class:`~tenku.pipelines.diffusers_backend.DiffusersBackend`). The options are those of
    :class:`BackendOptions`, checked before anything is loaded.
    """
    options = BackendOptions(
        dtype=dtype,
        offload=offload,
        vae_tiling=vae_tiling,
        vae_slicing=vae_slicing,
        compile=compile,
        attention=attention,
    )
    options.check(device)
    path = resolve_model(model)
    if (path / NATIVE_FILE).is_file():
        return NativeBackend.load(path, device=device, options=options)
    if (path / DIFFUSERS_FILE).is_file():
        from tenku.pipelines.diffusers_backend import DiffusersBackend

        return DiffusersBackend.load(path, device=device, options=options)
    raise FileNotFoundError(
        f"model: {path} has neither {NATIVE_FILE} (a tenku model) nor {DIFFUSERS_FILE} "
        "(a diffusers model)"
    )

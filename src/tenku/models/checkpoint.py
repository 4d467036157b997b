"""Saving and loading models as ``config.json`` + ``model.safetensors`` (half precision).

The config is a typed dataclass saved beside the weights, and the model is rebuilt from it
(the habit of nanoGPT's ``model_args`` and diffusers' ``config.json``). Saved key names are
permanent: a checkpoint in git history must keep loading.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from tenku.io import atomic_path

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
C = TypeVar("C")


def save_pretrained(
    model: torch.nn.Module,
    config: Any,
    directory: str | Path,
    *,
    dtype: torch.dtype = torch.float16,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``config`` (a dataclass) and ``model``'s weights (cast to ``dtype``) atomically.

    ``meta`` (training steps, data, ...) is stored in the config file under ``"meta"``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    body = {"class": type(config).__name__, "config": dataclasses.asdict(config)}
    body["meta"] = meta or {}
    with atomic_path(directory / CONFIG) as tmp:
        tmp.write_text(json.dumps(body, indent=1) + "\n")
    return directory


def load_config(directory: str | Path, cls: type[C]) -> C:
    """The config dataclass saved in ``directory``; unknown keys are an error."""
    path = Path(directory) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"model: {path} not found (expected config.json + {WEIGHTS})")
    body = json.loads(path.read_text())
    if body.get("class") != cls.__name__:
        raise ValueError(f"model: {path} holds a {body.get('class')}, not a {cls.__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(body["config"]) - fields)
    if unknown:
        raise ValueError(f"model: {path} has unknown config keys {unknown}")
    return cls(**_tuples(body["config"]))


def load_weights(model: torch.nn.Module, directory: str | Path) -> torch.nn.Module:
    """Load ``model.safetensors`` into ``model`` (strict; cast to the model's dtype)."""
    path = Path(directory) / WEIGHTS
    if not path.exists():
        raise FileNotFoundError(f"model: {path} not found")
    state = load_file(str(path))
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model


def load_meta(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / CONFIG).read_text()).get("meta", {})


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to tuples (configs are frozen dataclasses with tuple fields)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

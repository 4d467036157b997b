"""C2PA provenance: sign an mp4 with a manifest saying what made it, and verify one.

The manifest (via ``c2pa-python``) holds the claim generator ``tenku``, a ``c2pa.created``
action with digital source type ``trainedAlgorithmicMedia``, the model name, the SHA-256 of the
prompt (never the prompt), the creation time, the video id and watermark payload, and one
``inputTo`` ingredient per source video or image (remix, extend, image-to-video). Signing uses
:func:`tenku.safety.keys.load_identity` and is atomic: the signed copy is written to a hidden
temporary file and renamed over the target, so a reader sees the unsigned or the signed file,
never half of one. No timestamp authority is contacted (tenku runs offline), so the signature
time is the signer's claim.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import c2pa

from tenku import __version__
from tenku.io import atomic_path
from tenku.io.files import file_sha256
from tenku.safety.keys import SigningIdentity, load_identity, local_trust_anchors

CLAIM_GENERATOR = "tenku"
TENKU_ASSERTION = "org.tenku.generation"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MIME_TYPES = {
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
SIGNABLE = (".mp4", ".mov")
RELATIONSHIPS = ("inputTo", "componentOf", "parentOf")
# Failure codes about who signed, not about the bytes: they decide "trusted", not "tampered".
_TRUST_CODES = ("signingCredential.",)


@dataclass(frozen=True)
class Ingredient:
    """A source file the video was made from (``role`` e.g. ``remix``, ``extend``, ``image``)."""

    path: Path
    role: str = "source"
    relationship: str = "inputTo"  # C2PA: inputTo, componentOf or parentOf

    def __post_init__(self) -> None:
        if self.relationship not in RELATIONSHIPS:
            raise ValueError(f"relationship: {self.relationship!r} is not one of {RELATIONSHIPS}")
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"ingredient: no such file: {self.path}")


@dataclass(frozen=True)
class Provenance:
    """What the manifest says about one video."""

    video_id: str
    model: str
    prompt_sha256: str  # hex SHA-256 of the UTF-8 prompt: :func:`prompt_sha256`
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    watermark: dict[str, Any] = field(default_factory=dict)  # payload, visible options, ...
    ingredients: tuple[Ingredient, ...] = ()

    def assertion(self) -> dict[str, Any]:
        """The ``org.tenku.generation`` assertion's data."""
        return {
            "video_id": self.video_id,
            "model": self.model,
            "prompt_sha256": self.prompt_sha256,
            "created": self.created,
            "watermark": self.watermark,
            "ingredients": [
                {"file": Path(i.path).name, "role": i.role, "sha256": file_sha256(i.path)}
                for i in self.ingredients
            ],
        }


@dataclass(frozen=True)
class ManifestReport:
    """What :func:`verify_file` found. ``state`` is C2PA's: Trusted, Valid, Invalid or none."""

    present: bool
    valid: bool  # signature and content hashes check out
    trusted: bool  # valid, and signed by a certificate that chains to a trusted root
    tampered: bool  # a manifest is there but the bytes or the claim no longer match it
    state: str
    failures: list[str] = field(default_factory=list)  # C2PA failure codes
    signer: str | None = None  # the signing certificate's common name and issuer
    claim_generator: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    ingredients: list[dict[str, Any]] = field(default_factory=list)
    tenku: dict[str, Any] = field(default_factory=dict)  # the org.tenku.generation assertion
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return asdict(self)


def prompt_sha256(prompt: str) -> str:
    """Hex SHA-256 of the UTF-8 ``prompt``: the manifest records this, never the prompt."""
    return hashlib.sha256(prompt.encode()).hexdigest()


def manifest_definition(info: Provenance, title: str) -> dict[str, Any]:
    """The C2PA manifest definition (before ingredients) for ``info``."""
    agent = {"name": CLAIM_GENERATOR, "version": __version__}
    created = {
        "action": "c2pa.created",
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": agent,
        "when": info.created,
        "parameters": {"model": info.model},
    }
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [created]}},
            {"label": TENKU_ASSERTION, "data": info.assertion()},
        ],
    }


def sign_file(
    path: str | os.PathLike[str], info: Provenance, identity: SigningIdentity | None = None
) -> Path:
    """Embed a signed C2PA manifest for ``info`` into the mp4/mov at ``path``, atomically."""
    path = Path(path)
    if path.suffix.lower() not in SIGNABLE:
        raise ValueError(f"path: {path} must end in one of {SIGNABLE} to carry a C2PA manifest")
    identity = load_identity() if identity is None else identity
    mime = MIME_TYPES[path.suffix.lower()]
    signer_info = c2pa.C2paSignerInfo(
        identity.alg, identity.cert_chain.encode(), identity.private_key.encode(), None
    )
    with (
        _context(identity.trust_anchors) as context,
        c2pa.Signer.from_info(signer_info) as signer,
        c2pa.Builder(manifest_definition(info, path.name), context=context) as builder,
    ):
        for ingredient in info.ingredients:
            ipath = Path(ingredient.path)
            fmt = MIME_TYPES.get(ipath.suffix.lower())
            if fmt is None:
                continue  # still listed with its SHA-256 in the tenku assertion
            meta = {"title": ipath.name, "relationship": ingredient.relationship}
            with ipath.open("rb") as stream:
                builder.add_ingredient(meta, fmt, stream)
        with atomic_path(path) as tmp, path.open("rb") as src, tmp.open("w+b") as dst:
            builder.sign(signer, mime, src, dst)
    return path


def verify_file(path: str | os.PathLike[str], trust_anchors: str | None = None) -> ManifestReport:
    """Read and validate the C2PA manifest of ``path``.

    ``trust_anchors`` (PEM) are the roots to trust; by default ``TENKU_TRUST_ANCHORS`` and the
    local CA of :mod:`tenku.safety.keys` (nothing is created by verifying).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    anchors = local_trust_anchors() if trust_anchors is None else trust_anchors
    context = _context(anchors)
    try:
        reader = c2pa.Reader.try_create(str(path), context=context)
    except c2pa.C2paError as error:
        # Unreadable. With C2PA data inside (its JUMBF label), a signed file was damaged;
        # without, it is a format C2PA does not handle or not a media file at all.
        unsupported = isinstance(error, c2pa.C2paError.NotSupported)
        damaged = not unsupported and b"c2pa" in path.read_bytes()
        state = "Invalid" if damaged else "none"
        return ManifestReport(damaged, False, False, damaged, state, error=str(error))
    finally:
        context.close()
    if reader is None:
        return ManifestReport(False, False, False, False, "none")
    with reader:
        state = reader.get_validation_state() or "Invalid"
        results = (reader.get_validation_results() or {}).get("activeManifest") or {}
        manifest = reader.get_active_manifest() or {}
    failures = [f["code"] for f in results.get("failure", [])]
    successes = {s["code"] for s in results.get("success", [])}
    integrity = [c for c in failures if not c.startswith(_TRUST_CODES)]
    valid = not integrity  # trust failures (unknown or expired signer) leave the bytes valid
    trusted = valid and "signingCredential.trusted" in successes
    assertions = {a.get("label"): a.get("data") for a in manifest.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get(
        "actions", []
    )
    info = manifest.get("signature_info") or {}
    generators = manifest.get("claim_generator_info") or [{}]
    return ManifestReport(
        present=True,
        valid=valid,
        trusted=trusted,
        tampered=bool(integrity),
        state=state,
        failures=failures,
        signer=f"{info.get('common_name')} ({info.get('issuer')})" if info else None,
        claim_generator=generators[0].get("name"),
        actions=actions,
        ingredients=[
            {k: i.get(k) for k in ("title", "format", "relationship")}
            for i in manifest.get("ingredients", [])
        ],
        tenku=assertions.get(TENKU_ASSERTION) or {},
    )


def _context(trust_anchors: str) -> c2pa.Context:
    """A C2PA context that trusts ``trust_anchors`` (PEM) and makes no thumbnails."""
    settings: dict[str, Any] = {
        "builder": {"thumbnail": {"enabled": False}},
        "verify": {"verify_trust": bool(trust_anchors), "remote_manifest_fetch": False},
    }
    if trust_anchors:
        settings["trust"] = {"trust_anchors": trust_anchors}
    return c2pa.Context.from_json(json.dumps(settings))

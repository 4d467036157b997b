"""Check a video's provenance: its C2PA manifest and its invisible watermark, with a verdict."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tenku.io import read_video
from tenku.safety.invisible import DEFAULT_KEY, Detection, detect
from tenku.safety.provenance import ManifestReport, verify_file

VERDICTS = {
    "tampered": "TAMPERED: a C2PA manifest is present but the file no longer matches it",
    "authentic": "AUTHENTIC: signed by a trusted certificate and unchanged since signing",
    "untrusted": "SIGNED BY AN UNTRUSTED CERTIFICATE: unchanged since signing, signer unknown here",
    "watermark-only": "NO VALID MANIFEST, WATERMARK FOUND: made by a tenku generator, then "
    "re-encoded or stripped of its manifest",
    "nothing": "NO PROVENANCE FOUND: no C2PA manifest and no tenku watermark",
}


@dataclass(frozen=True)
class VerifyReport:
    """Both checks on one file, and ``verdict`` (a key of ``VERDICTS``)."""

    path: str
    manifest: ManifestReport
    watermark: Detection | None  # None when the frames could not be decoded
    watermark_matches_manifest: bool | None  # None when either side is missing
    verdict: str
    error: str | None = None  # why the watermark could not be checked

    @property
    def verdict_line(self) -> str:
        """One plain sentence for people."""
        return VERDICTS[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, watermark payload as hex."""
        mark = None
        if self.watermark is not None:
            mark = {**asdict(self.watermark), "payload": self.watermark.payload_hex}
            mark.pop("best_guess", None)
        return {
            "path": self.path,
            "verdict": self.verdict,
            "verdict_line": self.verdict_line,
            "manifest": self.manifest.to_dict(),
            "watermark": mark,
            "watermark_matches_manifest": self.watermark_matches_manifest,
            "error": self.error,
        }


def verify_video(
    path: str | os.PathLike[str],
    *,
    key: str | bytes = DEFAULT_KEY,
    trust_anchors: str | None = None,
    watermark: bool = True,
) -> VerifyReport:
    """Verify the C2PA manifest of ``path`` and look for the invisible watermark.

    ``trust_anchors`` (PEM) default to the local CA and ``TENKU_TRUST_ANCHORS``; ``watermark``
    False skips decoding the frames.
    """
    path = Path(path)
    manifest = verify_file(path, trust_anchors)
    detection, error = None, None
    if watermark:
        try:
            detection = detect(read_video(path).frames, key=key)
        except ValueError as e:  # not decodable as video (VideoReadError is a ValueError)
            error = str(e)
    claimed = (manifest.tenku.get("watermark") or {}).get("payload")
    matches = None
    if detection is not None and detection.found and claimed:
        matches = detection.payload_hex == claimed
    if manifest.tampered:
        verdict = "tampered"
    elif manifest.valid:
        verdict = "authentic" if manifest.trusted else "untrusted"
    elif detection is not None and detection.found:
        verdict = "watermark-only"
    else:
        verdict = "nothing"
    return VerifyReport(str(path), manifest, detection, matches, verdict, error)

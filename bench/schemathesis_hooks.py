"""schemathesis hooks for bench/schemathesis_serve.py (loaded through SCHEMATHESIS_HOOKS).

A form has no types: schemathesis's negative cases for a multipart body (``prompt: -7.1e16``,
``strength: []``) arrive as valid requests (the text "-7.1e16"; no ``strength`` field at all),
and the 200 they get is then counted as "schema-violating request accepted" (ST201). Negative
form cases are dropped; the same mutations as JSON are still sent (and refused), and positive
form cases still run.
"""

from __future__ import annotations

import schemathesis
from schemathesis import GenerationMode


@schemathesis.hook
def filter_case(context, case) -> bool:
    """False for a negative case with a form body (it cannot carry the type it claims)."""
    form = (case.media_type or "").startswith(("multipart/", "application/x-www-form"))
    meta = getattr(case, "_meta", None)
    negative = meta is not None and meta.generation.mode == GenerationMode.NEGATIVE
    return not (form and negative)

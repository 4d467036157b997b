"""Test-session setup: one compute thread per pytest worker, a private TENKU_HOME, and the
tiny random native model that the pipeline and task tests share.

The suite runs with ``pytest -n 2`` on a 2-core machine; torch's default of one thread per
core would oversubscribe it (two workers x two threads), which makes small tensor
operations wait on each other. Set before any test module imports torch.
"""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# Signing keys (the local C2PA CA and leaf) and caches go to a folder of this test session,
# never to the user's home.
if "TENKU_HOME" not in os.environ:
    import tempfile

    os.environ["TENKU_HOME"] = tempfile.mkdtemp(prefix="tenku-home-")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A native model folder with tiny random weights, as `tenku export` writes it."""
    from tenku.pipelines.tiny import save_tiny_native

    return save_tiny_native(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def pipe(model_dir):
    """The tiny random model loaded as a pipeline (one per test module)."""
    from tenku.models.text import default_text_encoder
    from tenku.pipelines import TenkuPipeline

    return TenkuPipeline.from_pretrained(model_dir, text_encoder=default_text_encoder())

"""Test-session setup: one compute thread per pytest worker.

The suite runs with ``pytest -n 2`` on a 2-core machine; torch's default of one thread per
core would oversubscribe it (two workers x two threads), which makes small tensor
operations wait on each other. Set before any test module imports torch.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# Signing keys (the local C2PA CA and leaf) and caches go to a folder of this test session,
# never to the user's home.
if "TENKU_HOME" not in os.environ:
    import tempfile

    os.environ["TENKU_HOME"] = tempfile.mkdtemp(prefix="tenku-home-")

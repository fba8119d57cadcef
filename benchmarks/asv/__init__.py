"""The asv suites: every module of this folder is one (asv.conf.json's `benchmark_dir`).

asv imports this folder as a top-level package named after it, with only its
parent on the path; the suites share `benchmarks/cases/` with the other tools,
so the repository root goes on the path too.
"""

import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

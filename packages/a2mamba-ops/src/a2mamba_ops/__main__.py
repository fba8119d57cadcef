"""`python -m a2mamba_ops`: what this installation was built with and can run.

Exits with status 1 when a backend that the build compiled fails to load, saying why.
"""

from __future__ import annotations

import platform
import sys

import torch

from . import __version__, _native, available_backends


def main() -> int:
    info = _native.build_info()
    print(f"a2mamba-ops {__version__}")
    print(f"python      {platform.python_version()}")
    print(f"torch       {torch.__version__} (built against {info['torch_version'] or 'n/a: no native build'})")
    print(f"backends    {', '.join(available_backends())}")
    built = _native.built_backends()
    print(f"built       {', '.join(built) if built else 'nothing: a source checkout without a native build'}")
    if _native._C is None:
        print(f"native      not loaded: {_native.IMPORT_ERROR}")
    else:
        print(f"compiler    {info['compiler']}")
        if info["cuda"]:
            print(f"cuda archs  {info['cuda_archs']} (torch CUDA {torch.version.cuda})")
            if not torch.cuda.is_available():
                print("cuda        kernels built, but no CUDA device is visible")
        else:
            print("cuda        not built (no nvcc or a CPU-only torch at build time)")
    problems = _native.check_build()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m a2mamba_ops`: what this installation was built with and can run."""

from __future__ import annotations

import platform

import torch

from . import __version__, _native, available_backends


def main() -> None:
    info = _native.build_info()
    print(f"a2mamba-ops {__version__}")
    print(f"python      {platform.python_version()}")
    print(f"torch       {torch.__version__} (built against {info['torch_version'] or 'n/a: no native build'})")
    print(f"backends    {', '.join(available_backends())}")
    if _native._C is None:
        print(f"native      not loaded: {_native.IMPORT_ERROR}")
    else:
        print(f"compiler    {info['compiler']}")
        if _native.has_cpu_kernels():
            print(
                f"cpu kernels {_native.cpu_capability()} ({_native.cpu_capability_reason}; "
                f"compiled: {', '.join(_native.compiled_cpu_capabilities())}; "
                f"this CPU runs: {', '.join(_native.supported_cpu_capabilities())})"
            )
        if info["cuda"]:
            print(f"cuda archs  {info['cuda_archs']} (torch CUDA {torch.version.cuda})")
            if not torch.cuda.is_available():
                print("cuda        kernels built, but no CUDA device is visible")
        else:
            print("cuda        not built (no nvcc or a CPU-only torch at build time)")


if __name__ == "__main__":
    main()

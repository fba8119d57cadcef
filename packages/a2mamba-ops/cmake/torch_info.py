"""Print what CMake needs to know about the installed torch, one KEY=value a line."""

import os

import torch

root = os.path.dirname(torch.__file__)
print(f"TORCH_ROOT={root}")
print(f"TORCH_VERSION={torch.__version__}")
print(f"TORCH_CUDA_VERSION={torch.version.cuda or 'none'}")
print(f"TORCH_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}")

"""``python -m a2mamba_train ...`` is ``a2mamba-train ...`` (handy with torchrun -m)."""

from __future__ import annotations

from .cli import train_main

if __name__ == "__main__":
    raise SystemExit(train_main())

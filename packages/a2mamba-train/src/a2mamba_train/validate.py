"""``python -m a2mamba_train.validate ...`` is ``a2mamba-validate ...``."""

from __future__ import annotations

from .cli import validate_main

if __name__ == "__main__":
    raise SystemExit(validate_main())

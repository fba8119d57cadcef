"""`python -m a2mamba_models info <name>`."""

import sys

from .cli import main

sys.exit(main())

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _fresh_seed(request):
    # Fresh random inputs per test, but reproducible from the test's name.
    torch.manual_seed(hash(request.node.nodeid) % (2**31))
    yield

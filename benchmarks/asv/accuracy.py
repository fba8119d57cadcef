"""asv suite `accuracy`: tracked numbers that must not get worse.

- `Equivalence.track_float32_rel_error`: each variant's float32 logits against
  a float64 run of the same (seeded, randomly initialised) model on the same
  image, as max |f32 - f64| / max |f64|. Kernels that lose precision show here.
- `GoldenFile.track_float32_rel_error`: our model on the golden data of the
  models' tests (weights and logits of the reference implementation), float32
  against the reference's float64 logits.
- `FashionMNIST.track_error_pct`: test error of the train package's quick
  Fashion-MNIST run (`--recipe fashion-mnist-quick`); `track_top1_pct` is the
  same number as accuracy, for reading.

Every value here is "lower is better" except `track_top1_pct`, so
`asv continuous` flags a precision or accuracy drop like a slowdown.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.cases.models import A2MAMBA_VARIANTS, IMG_SIZE

REPO_ROOT = Path(__file__).resolve().parents[2]


GOLDEN_FILE = REPO_ROOT / "packages" / "a2mamba-models" / "tests" / "data" / "a2mamba_small_config_golden.pt"


def _require_models():
    try:
        import a2mamba_models
    except ImportError as exc:
        raise NotImplementedError(f"a2mamba_models is not installed: {exc}") from None
    return a2mamba_models


def _max_rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


class Equivalence:
    params = [A2MAMBA_VARIANTS]
    param_names = ["model"]
    timeout = 600

    def setup(self, model):
        _require_models()
        import timm

        if not timm.is_model(model):
            raise NotImplementedError(f"timm does not know {model!r}")
        torch.manual_seed(0)
        net = timm.create_model(model, pretrained=False).eval()
        x = torch.randn(1, 3, IMG_SIZE, IMG_SIZE, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            self.f32 = net(x)
            self.f64 = net.double()(x.double())

    def track_float32_rel_error(self, model):
        return _max_rel(self.f32, self.f64)

    track_float32_rel_error.unit = "relative error"


class GoldenFile:
    timeout = 300

    def setup(self):
        models = _require_models()
        if not GOLDEN_FILE.is_file():
            raise NotImplementedError(f"golden data not found at {GOLDEN_FILE}")
        golden = torch.load(GOLDEN_FILE, weights_only=True)
        net = models.A2Mamba(**golden["meta"]["constructor_kwargs"])
        net.load_state_dict(golden["state_dict"], strict=True)
        net.eval()
        self.errors = []
        with torch.no_grad():
            for name, x in golden["inputs"].items():
                self.errors.append(_max_rel(net(x), golden["logits_fp64"][name]))

    def track_float32_rel_error(self):
        return max(self.errors)

    track_float32_rel_error.unit = "relative error"


class FashionMNIST:
    """The train package's quick recipe, run once per benchmark process as its users would run it."""

    timeout = 1800
    recipe = "fashion-mnist-quick"

    def setup_cache(self):
        # Runs once for both tracks below (each runs in its own process). A skip cannot be raised
        # here (asv counts that as a failure), so the reason travels to setup() instead.
        try:
            import a2mamba_train  # noqa: F401
        except ImportError as exc:
            return {"skip": f"a2mamba_train is not installed: {exc}"}
        with tempfile.TemporaryDirectory(prefix="asv-fmnist-") as tmp:
            run_dir = Path(tmp) / "run"
            cmd = [sys.executable, "-m", "a2mamba_train", "--recipe", self.recipe, "--output", str(run_dir)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
                if "Fashion-MNIST not found" in proc.stderr:
                    return {"skip": f"Fashion-MNIST data not installed: {tail}"}
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {tail}")
            return {"top1": _final_top1(run_dir / "metrics.jsonl")}

    def setup(self, run):
        if "skip" in run:
            raise NotImplementedError(run["skip"])

    def track_error_pct(self, run):
        return 100.0 - run["top1"]

    track_error_pct.unit = "%"

    def track_top1_pct(self, run):
        return run["top1"]

    track_top1_pct.unit = "%"


def _final_top1(metrics: Path) -> float:
    """Top-1 % of the run's `final` record in its metrics.jsonl."""
    top1 = None
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "final":
            top1 = float(record["top1"])
    if top1 is None:
        raise RuntimeError(f"no 'final' record in {metrics}")
    return top1

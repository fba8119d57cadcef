"""asv suite `models`: inference and training throughput and peak memory at 224x224.

Settings: `cpu-b1`, `cpu-b64` (the small variants and resnet50 only) and
`cuda-b128-amp` (every variant plus resnet50 and convnext_tiny, channels_last,
float16 autocast). The reference timm models run in the same asv run, so the
A2Mamba / reference ratio compares like with like.

Each setting has a `time_` benchmark (seconds per batch: lower is better, what
`asv continuous` checks for regressions) and a `track_img_per_s` figure
(timm benchmark.py's images/s: the headline number; higher is better, so the
compare session leaves it out). Memory: `peakmem_batch` (the process's peak
resident memory, asv's measure) everywhere and, on GPU, the peak allocated
CUDA memory (`*CudaMemory.track_peak_cuda_mib`).
"""

from __future__ import annotations

from benchmarks.cases.models import (
    A2MAMBA_VARIANTS,
    REFERENCE_MODELS,
    Setting,
    create_model,
    images_per_second,
    inference_step,
    throughput_rounds,
    train_step,
)
from benchmarks.cases.timing import cuda_peak_mib

MODELS = A2MAMBA_VARIANTS + REFERENCE_MODELS


class _ModelBench:
    number = 1
    repeat = (1, 3, 20.0)
    warmup_time = 0.0  # setup runs one step already
    rounds = 1
    timeout = 900

    make_step = None  # inference_step or train_step

    def setup(self, model, setting):
        self.setting = Setting.parse(setting)
        self.model = create_model(model, self.setting)
        self.step = type(self).make_step(self.model, self.setting)
        self.step()  # warm-up: allocator, thread pools, cudnn autotuning

    def time_batch(self, model, setting):
        self.step()

    def peakmem_batch(self, model, setting):
        self.step()

    def track_img_per_s(self, model, setting):
        warmup, rounds = throughput_rounds(self.setting)
        return images_per_second(self.step, self.setting.batch, rounds, warmup, self.setting.device)

    track_img_per_s.unit = "images/s"


class Inference(_ModelBench):
    params = (MODELS, ["cpu-b1", "cpu-b64", "cuda-b128-amp"])
    param_names = ["model", "setting"]
    make_step = staticmethod(inference_step)


class Training(_ModelBench):
    params = (MODELS, ["cpu-b16", "cuda-b128-amp"])
    param_names = ["model", "setting"]
    make_step = staticmethod(train_step)


class _CudaMemory:
    """Peak allocated GPU memory of one step (peakmem_ above measures the host process)."""

    timeout = 600
    param_names = ["model", "setting"]
    make_step = None

    def setup(self, model, setting):
        self.setting = Setting.parse(setting)
        self.step = type(self).make_step(create_model(model, self.setting), self.setting)
        self.step()

    def track_peak_cuda_mib(self, model, setting):
        return cuda_peak_mib(self.step)

    track_peak_cuda_mib.unit = "MiB"


class InferenceCudaMemory(_CudaMemory):
    params = (MODELS, ["cuda-b128-amp"])
    make_step = staticmethod(inference_step)


class TrainingCudaMemory(_CudaMemory):
    params = (MODELS, ["cuda-b128-amp"])
    make_step = staticmethod(train_step)

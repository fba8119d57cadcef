"""asv suite `export`: CPU latency of a2mamba_n at 224x224, onnxruntime against PyTorch eager.

`setup_cache` exports the model once per asv run (`a2mamba_models.export.export_onnx`, dynamic
batch; a few minutes on two cores); both runtimes then run the same weights with the same number
of threads (torch's intra-op thread count), so the ratio compares the runtimes, not the thread
settings. Needs onnx, onnxscript and onnxruntime in the benchmark environment.
"""

from __future__ import annotations

import os
import tempfile

import torch

MODEL = "a2mamba_n"
IMG_SIZE = (224, 224)
RUNTIMES = ["pytorch", "onnxruntime"]
BATCHES = [1, 8]


class OnnxruntimeVsPytorch:
    params = (RUNTIMES, BATCHES)
    param_names = ["runtime", "batch"]
    number = 1
    repeat = (3, 10, 60.0)
    warmup_time = 0.0  # setup runs one forward pass already
    timeout = 1800

    def setup_cache(self):
        import timm

        import a2mamba_models  # noqa: F401  (registers the models)
        from a2mamba_models.export import export_onnx

        torch.manual_seed(0)
        model = timm.create_model(MODEL).eval()
        folder = tempfile.mkdtemp(prefix="a2mamba-asv-export-")
        export_onnx(model, os.path.join(folder, f"{MODEL}.onnx"), IMG_SIZE)
        torch.save(model.state_dict(), os.path.join(folder, "weights.pth"))
        return folder

    def setup(self, folder, runtime, batch):
        x = torch.randn(batch, 3, *IMG_SIZE)
        if runtime == "pytorch":
            import timm

            import a2mamba_models  # noqa: F401

            model = timm.create_model(MODEL).eval()
            model.load_state_dict(torch.load(os.path.join(folder, "weights.pth"), weights_only=True))

            def forward():
                with torch.inference_mode():
                    model(x)

        else:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = onnxruntime.InferenceSession(
                os.path.join(folder, f"{MODEL}.onnx"), options, providers=["CPUExecutionProvider"]
            )
            feed = {session.get_inputs()[0].name: x.numpy()}

            def forward():
                session.run(None, feed)

        self.forward = forward
        self.forward()  # warm-up: thread pools, allocator, onnxruntime's graph optimisation

    def time_forward(self, folder, runtime, batch):
        self.forward()

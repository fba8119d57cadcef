"""A2Mamba inside detection and segmentation frameworks: torchvision Mask R-CNN, segmentation_models_pytorch."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch
from torchvision.models.detection import MaskRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

from a2mamba_models.detection import A2MambaFPN, a2mamba_fpn_backbone


def _targets(n: int, size: int) -> list[dict]:
    targets = []
    for _ in range(n):
        boxes = torch.tensor([[4.0, 6.0, 40.0, 50.0], [20.0, 10.0, 60.0, 30.0]])
        masks = torch.zeros(2, size, size, dtype=torch.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist(), strict=True):
            m[y0:y1, x0:x1] = 1
        targets.append(dict(boxes=boxes, labels=torch.tensor([1, 2]), masks=masks))
    return targets


def test_fpn_backbone_gives_torchvision_named_levels():
    torch.manual_seed(0)
    backbone = a2mamba_fpn_backbone("a2mamba_test", out_channels=32)
    features = backbone(torch.randn(2, 3, 64, 96))
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert backbone.strides == [4, 8, 16, 32]
    assert [tuple(f.shape) for f in features.values()] == [
        (2, 32, 16, 24),
        (2, 32, 8, 12),
        (2, 32, 4, 6),
        (2, 32, 2, 3),
        (2, 32, 1, 2),
    ]


def test_frozen_batch_norm_option_freezes_every_batch_norm():
    backbone = A2MambaFPN("a2mamba_test", out_channels=16, freeze_batch_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.body.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in backbone.body.modules())


def test_mask_rcnn_trains_a_step_and_runs_inference():
    torch.manual_seed(0)
    backbone = A2MambaFPN("a2mamba_test", out_channels=32)
    # Few proposals and detections: the test is about the wiring, not about the heads' throughput.
    few = dict(rpn_pre_nms_top_n_train=64, rpn_post_nms_top_n_train=16, rpn_pre_nms_top_n_test=64)
    few.update(rpn_post_nms_top_n_test=16, box_batch_size_per_image=16, box_detections_per_img=4)
    model = MaskRCNN(backbone, num_classes=3, min_size=64, max_size=64, **few)
    images = [torch.rand(3, 64, 64) for _ in range(2)]
    model.train()
    losses = model(images, _targets(2, 64))
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    stem = next(backbone.body.parameters())
    before = stem.detach().clone()
    total.backward()
    grads = [p.grad for p in backbone.body.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)  # the loss reaches every backbone weight
    optimizer.step()
    assert not torch.equal(stem, before)
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for d in detections:
        assert set(d) == {"boxes", "labels", "scores", "masks"}
        assert d["masks"].shape[1:] == (1, 64, 64)


@pytest.mark.parametrize("architecture", [smp.Unet, smp.FPN])
def test_segmentation_models_pytorch_timm_universal_encoder(architecture):
    torch.manual_seed(0)
    model = architecture(encoder_name="tu-a2mamba_test", encoder_weights=None, classes=4).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 4, 64, 96)
    model.train()
    model(x).mean().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())

"""The parts of timm's model contract that timm's own test suite relies on (see also `nox -s timm_contract`)."""

from __future__ import annotations

import inspect

import pytest
import timm
import torch
from torch import nn

import a2mamba_models
from a2mamba_models import variants

ALL = (*a2mamba_models.PUBLISHED, "a2mamba_test")


def _tiny(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("a2mamba_test", **kwargs).eval()


@pytest.mark.parametrize("name", ALL)
def test_each_variant_has_an_explicit_register_model_function(name):
    fn = getattr(variants, name)
    assert timm.models.model_entrypoint(name) is fn
    assert fn.__name__ == name
    source = inspect.getsource(variants)
    assert f"@register_model\ndef {name}(pretrained: bool = False, **kwargs)" in source


@pytest.mark.parametrize("name", ALL)
def test_create_model_on_the_meta_device_allocates_nothing_and_runs(name):
    model = timm.create_model(name, device="meta", dtype=torch.float32)
    tensors = [*model.parameters(), *model.buffers()]
    assert {t.device.type for t in tensors} == {"meta"}
    x = torch.randn(2, 3, 96, 96, device="meta")
    assert model(x).shape == (2, model.num_classes)
    assert model.forward_features(x).shape == (2, model.num_features, 3, 3)


def test_create_model_dtype_gives_weights_and_outputs_of_that_dtype():
    model = _tiny(dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model(torch.randn(1, 3, 64, 64, dtype=torch.float64)).dtype == torch.float64


def test_create_model_device_cpu_matches_the_default():
    reference = _tiny()
    placed = _tiny(device="cpu")
    for (name, a), (_, b) in zip(reference.state_dict().items(), placed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_global_pool_empty_gives_the_unpooled_projected_map_and_per_pixel_logits():
    pooled = _tiny()
    dense = _tiny(global_pool="")
    dense.load_state_dict(pooled.state_dict())
    x = torch.randn(2, 3, 64, 64)
    logits_map = dense(x)
    assert logits_map.shape == (2, 10, 2, 2)
    # A 1x1 classifier commutes with average pooling: the mean of the per-pixel logits is the logits.
    torch.testing.assert_close(logits_map.mean((2, 3)), pooled(x), rtol=1e-5, atol=1e-6)
    dense.reset_classifier(0)
    assert dense(x).shape == (2, dense.head_hidden_size, 2, 2)


@pytest.mark.parametrize("pool", ["max", "avgmax"])
def test_global_pool_max_and_avgmax_pool_the_projected_map(pool):
    unpooled = _tiny(global_pool="", num_classes=0)
    model = _tiny(global_pool=pool, num_classes=0)
    model.load_state_dict(unpooled.state_dict())
    x = torch.randn(2, 3, 64, 64)
    fmap = unpooled(x)
    expected = fmap.amax((2, 3)) if pool == "max" else 0.5 * (fmap.amax((2, 3)) + fmap.mean((2, 3)))
    torch.testing.assert_close(model(x), expected)


def test_unsupported_global_pool_is_refused():
    with pytest.raises(ValueError, match="global_pool must be one of"):
        timm.create_model("a2mamba_test", global_pool="catavgmax")
    model = _tiny()
    with pytest.raises(ValueError, match="global_pool must be one of"):
        model.reset_classifier(3, "token")


def test_reset_classifier_changes_pooling_only_when_asked():
    model = _tiny(global_pool="max")
    model.reset_classifier(4)
    assert model.global_pool == "max"
    model.reset_classifier(0, "")
    assert model(torch.randn(1, 3, 64, 64)).dim() == 4


def test_drop_rate_drops_before_the_classifier_in_training_only():
    model = _tiny(drop_rate=0.5)
    x = torch.randn(4, 3, 64, 64)
    plain = _tiny()
    torch.testing.assert_close(model(x), plain(x))  # eval: no dropout
    model.train()
    torch.manual_seed(1)
    pre = model.forward_head(model.forward_features(x), pre_logits=True)
    assert (pre == 0).float().mean() > 0.3  # about half the pooled features dropped
    with pytest.raises(ValueError, match="drop_rate"):
        timm.create_model("a2mamba_test", drop_rate=1.0)


@pytest.mark.parametrize("training", [False, True])
def test_reset_classifier_keeps_device_dtype_and_mode(training):
    model = _tiny(dtype=torch.float64).train(training)
    model.reset_classifier(0)
    model.reset_classifier(7)
    head = model.get_classifier()
    assert head.weight.dtype == torch.float64
    assert all(m.training == training for m in model.modules())
    assert model(torch.randn(1, 3, 64, 64, dtype=torch.float64)).shape == (1, 7)


def test_reset_classifier_on_meta_keeps_meta():
    model = timm.create_model("a2mamba_test", device="meta")
    model.reset_classifier(5)
    assert model.get_classifier().weight.device.type == "meta"


def test_unknown_constructor_argument_is_a_type_error():
    with pytest.raises(TypeError, match="not_a_model_arg"):
        timm.create_model("a2mamba_test", not_a_model_arg=1)


def _fx_extractor(model, return_nodes=None):
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    tracer_kwargs = dict(
        leaf_modules=timm.layers.get_notrace_modules(), autowrap_functions=timm.layers.get_notrace_functions()
    )
    _, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    nodes = return_nodes or [eval_nodes[-1]]
    return create_feature_extractor(model, return_nodes=nodes, tracer_kwargs=tracer_kwargs), eval_nodes


def test_fx_symbolic_trace_matches_eager():
    model = _tiny()
    _, eval_nodes = _fx_extractor(model)
    stages = ["layers.0", "layers.2", "layers.4", "layers.6"]  # torchvision returns each module's last node
    extractor, _ = _fx_extractor(model, [*stages, eval_nodes[-1]])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = extractor(x)
        _, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(out[eval_nodes[-1]], model(x))
    for node, expected in zip(stages, intermediates, strict=True):
        torch.testing.assert_close(out[node], expected)


def test_fx_traced_model_still_checks_its_input():
    extractor, _ = _fx_extractor(_tiny())
    with pytest.raises(ValueError, match="in_chans=3"):
        extractor(torch.randn(1, 1, 64, 64))

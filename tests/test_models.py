"""The networks: sizes of the paper presets, shapes, attention maps, FLOPs, config errors,
loading trained weights."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from cosmo_sbi import PARAMETER_NAMES
from cosmo_sbi.config import ConfigError
from cosmo_sbi.models import MODEL_NAMES, network
from cosmo_sbi.models.build import (
    MODEL_CONFIG_FILE,
    WEIGHTS_FILE,
    build_model,
    count_parameters,
    describe,
    load_trained,
    peak_bf16_flops,
    save_trained,
)
from tests.conftest import REPO

N_PARAMS = len(PARAMETER_NAMES)


@pytest.mark.parametrize(("name", "paper_count"), [("cnn", 9.2e6), ("vit", 22.4e6)])
def test_paper_presets_match_the_published_parameter_counts(name: str, paper_count: float):
    # Hwang, Sabiu et al. 2023 quote 9.2M (CNN) and 22.4M (ViT) to one decimal; 2% is the
    # agreed tolerance for an architecture matched in size rather than layer by layer.
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        count = count_parameters(build_model(name, {"preset": "paper"}, grid_size=64))
    assert count == pytest.approx(paper_count, rel=0.02)


def test_paper_vit_cuts_64_cubed_into_512_patches_plus_cls():
    with torch.device("meta"):
        model = build_model("vit", {"preset": "paper"}, grid_size=64)
    assert model.n_patches == 512
    assert tuple(model.pos_embedding.shape) == (1, 513, 384)


@pytest.mark.parametrize(("name", "grid_size"), [("cnn", 16), ("cnn", 32), ("vit", 16),
                                                 ("vit", 32)])
def test_forward_gives_a_mean_and_log_variance_per_parameter(name: str, grid_size: int):
    model = build_model(name, {"preset": "small"}, grid_size=grid_size).eval()
    mean, log_var = model(torch.randn(3, 1, grid_size, grid_size, grid_size))
    assert mean.shape == log_var.shape == (3, N_PARAMS)
    assert mean.dtype == log_var.dtype == torch.float32
    assert not torch.equal(mean[0], mean[1])  # different inputs, different predictions


@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_a_wrong_input_shape_is_rejected_with_the_expected_shape(name: str):
    model = build_model(name, {"preset": "small"}, grid_size=16)
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16, 16\)"):
        model(torch.randn(2, 1, 16, 16, 8))


def test_attention_maps_are_distributions_that_reproduce_the_sdpa_output():
    torch.manual_seed(0)
    model = build_model("vit", {"preset": "small", "patch_size": 4}, grid_size=16).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        mean, log_var = model(x)  # scaled_dot_product_attention path
        mean_explicit, log_var_explicit, maps = model(x, return_attention=True)
    tokens = 1 + (16 // 4) ** 3
    assert len(maps) == model.config.depth
    for weights in maps:
        assert weights.shape == (2, model.config.heads, tokens, tokens)
        assert torch.all(weights >= 0)
        # float32 softmax over 65 keys: the sum is 1 to a few ulps (~1e-7); 1e-5 is generous.
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, model.config.heads,
                                                                   tokens), atol=1e-5, rtol=0)
    # Same maths, different kernels (fused SDPA vs softmax then matmul): float32 rounding
    # differences of ~1e-6 relative; assert_close's float32 defaults (rtol 1.3e-6, atol 1e-5).
    torch.testing.assert_close(mean_explicit, mean)
    torch.testing.assert_close(log_var_explicit, log_var)
    assert not torch.allclose(maps[0][0, 0], maps[0][0, 0].mean())  # not uniform attention


def test_attention_weights_are_only_computed_when_asked():
    model = build_model("vit", {"preset": "small"}, grid_size=16).eval()
    assert len(model(torch.randn(1, 1, 16, 16, 16))) == 2


def test_mean_pooling_is_available():
    model = build_model("vit", {"preset": "small", "pool": "mean"}, grid_size=16).eval()
    mean, _ = model(torch.randn(1, 1, 16, 16, 16))
    assert mean.shape == (1, N_PARAMS)


def test_the_conv_stem_keeps_the_tokens_and_needs_an_even_patch():
    patch = build_model("vit", {"preset": "small"}, grid_size=16).eval()
    conv = build_model("vit", {"preset": "small", "stem": "conv"}, grid_size=16).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert conv.patch_embedding(x).shape == patch.patch_embedding(x).shape == (2, 64, 2, 2, 2)
    with pytest.raises(ValueError, match=r"models\.vit\.patch_size: the conv stem.*got 3"):
        build_model("vit", {"preset": "small", "stem": "conv", "patch_size": 3}, grid_size=9)


def test_a_patch_size_that_does_not_divide_the_grid_names_the_field():
    with pytest.raises(ValueError, match=r"models\.vit\.patch_size.*grid size 20.*got 8"):
        build_model("vit", {"preset": "small", "patch_size": 8}, grid_size=20)


def test_too_many_cnn_stages_for_the_grid_names_the_field():
    with pytest.raises(ValueError, match=r"models\.cnn\.channels"):
        build_model("cnn", {"preset": "paper"}, grid_size=16)  # 5 halvings need >= 32
    with pytest.raises(ValueError, match=r"stem_stride 4 reduce the grid 16 times"):
        build_model("cnn", {"preset": "small", "stem_stride": 4}, grid_size=8)


def test_patch_stem_reads_non_overlapping_patches():
    model = build_model("cnn", {"preset": "small", "stem_stride": 4}, grid_size=16).eval()
    stem = model.features[0]
    assert (stem.kernel_size, stem.stride) == ((4, 4, 4), (4, 4, 4))
    assert not any(isinstance(layer, torch.nn.MaxPool3d) for layer in model.features[:3])
    mean, _ = model(torch.randn(2, 1, 16, 16, 16))
    assert mean.shape == (2, N_PARAMS)


def test_overrides_replace_preset_fields():
    model = build_model("cnn", {"preset": "small", "channels": [4, 8], "head_hidden": 16},
                        grid_size=16)
    assert model.config.channels == (4, 8)
    assert model.config.head_hidden == 16
    # 1->4 and 4->8 convolutions (27 weights each, no bias) + batch-norm pairs + the head
    expected = 27 * 4 + 2 * 4 + 27 * 4 * 8 + 2 * 8 + (8 * 16 + 16) + (16 * 12 + 12)
    assert count_parameters(model) == expected


@pytest.mark.parametrize(("config", "field"), [
    ({"preset": "small", "chanels": [4, 8]}, "models.cnn.chanels"),
    ({"preset": "huge"}, "models.cnn.preset"),
])
def test_unknown_fields_and_presets_are_named(config: dict, field: str):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_model("cnn", config)


@pytest.mark.parametrize(("name", "override", "message"), [
    ("vit", {"dim": 64.5}, r"models\.vit\.dim: expected int, got 64\.5"),
    ("vit", {"pool": 1}, r"models\.vit\.pool: expected str"),
    ("cnn", {"channels": [8, "16"]}, r"models\.cnn\.channels: expected a non-empty list of int"),
    ("cnn", {"channels": []}, r"models\.cnn\.channels: expected a non-empty list of int"),
])
def test_overrides_of_the_wrong_type_are_named(name: str, override: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        build_model(name, {"preset": "small", **override}, grid_size=16)


@pytest.mark.parametrize(("name", "override", "message"), [
    ("vit", {"depth": 0}, r"models\.vit\.depth: expected >= 1, got 0"),
    ("vit", {"dropout": 1.0}, r"models\.vit\.dropout: expected 0 <= dropout < 1"),
    ("cnn", {"head_hidden": -4}, r"models\.cnn\.head_hidden: expected >= 1"),
    ("cnn", {"dropout": -0.1}, r"models\.cnn\.dropout: expected 0 <= dropout < 1"),
])
def test_out_of_range_architecture_values_are_named(name: str, override: dict, message: str):
    with pytest.raises(ValueError, match=message):
        build_model(name, {"preset": "small", **override}, grid_size=16)


def test_an_integer_may_stand_for_a_float_field():
    model = build_model("cnn", {"preset": "small", "dropout": 0}, grid_size=16)
    assert model.config.dropout == 0


@pytest.mark.parametrize(("name", "grid_size", "overrides"), [
    ("cnn", 32, {}),
    ("cnn", 32, {"stem_stride": 2}),
    ("cnn", 32, {"stem_stride": 4}),
    ("vit", 16, {"patch_size": 4}),
    ("vit", 16, {"patch_size": 4, "stem": "conv", "stem_channels": 8}),
])
def test_analytic_flops_match_torch_flop_counter(name: str, grid_size: int, overrides: dict):
    model = build_model(name, {"preset": "small", **overrides}, grid_size=grid_size).eval()
    x = torch.randn(1, 1, grid_size, grid_size, grid_size)
    # The explicit attention path: FlopCounterMode counts its matmuls but has no formula
    # for the CPU SDPA kernel. Both count 2 FLOPs per multiply-add of convolutions and
    # matrix products only, so they agree exactly.
    kwargs = {"return_attention": True} if name == "vit" else {}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, **kwargs)
    assert model.forward_flops_per_sample() == counter.get_total_flops()


def test_peak_flops_table_knows_h100_and_h200():
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_bf16_flops("NVIDIA H200") == 989e12
    assert peak_bf16_flops("cpu") is None


def _save_model_dir(directory, name: str, model: torch.nn.Module) -> None:
    save_trained(directory, name, model, model.state_dict())


@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_load_trained_rebuilds_the_same_model(tmp_path, name: str):
    torch.manual_seed(1)
    model = build_model(name, {"preset": "small", "dropout": 0.3}, grid_size=16).eval()
    _save_model_dir(tmp_path, name, model)
    loaded = load_trained(tmp_path)
    assert not loaded.training
    assert loaded.config == model.config
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)


def test_weights_of_another_config_raise_naming_the_file(tmp_path):
    small = build_model("cnn", {"preset": "small"}, grid_size=16)
    _save_model_dir(tmp_path, "cnn", small)
    wider = build_model("cnn", {"preset": "small", "channels": [8, 16, 64]}, grid_size=16)
    (tmp_path / MODEL_CONFIG_FILE).write_text(json.dumps(describe("cnn", wider)))
    with pytest.raises(ValueError, match=rf"{tmp_path / WEIGHTS_FILE}.*do not match"):
        load_trained(tmp_path)


@pytest.mark.parametrize(("file", "content"), [
    (WEIGHTS_FILE, b"PK\x03\x04 truncated"), (WEIGHTS_FILE, b""),
    (MODEL_CONFIG_FILE, b'{"model": "cnn", "conf'), (MODEL_CONFIG_FILE, b"\xff\xfe"),
    (MODEL_CONFIG_FILE, b'{"model": "resnet", "config": {}, "grid_size": 16, "n_params": 6}'),
])
def test_a_damaged_model_file_raises_naming_it(tmp_path, file: str, content: bytes):
    _save_model_dir(tmp_path, "cnn", build_model("cnn", {"preset": "small"}, grid_size=16))
    (tmp_path / file).write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / file))):
        load_trained(tmp_path)


def _schema() -> dict:
    return yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_the_schema_lists_the_networks_of_the_registry():
    schema = _schema()["properties"]
    assert tuple(schema["models"]["properties"]) == MODEL_NAMES
    assert tuple(schema["training"]["properties"]["models"]["items"]["enum"]) == MODEL_NAMES
    assert tuple(schema["training"]["properties"]["models"]["default"]) == MODEL_NAMES


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_registered_network_builds_from_each_preset(name: str):
    entry = network(name)
    for preset in entry.presets:
        model = build_model(name, {"preset": preset}, grid_size=32)
        assert isinstance(model, entry.model) and isinstance(model.config, entry.config)
    assert entry.attention_maps == hasattr(model, "pos_embedding")


def test_an_unknown_network_is_refused_with_the_known_names():
    with pytest.raises(ConfigError, match=r"unknown model 'resnet'.*\['cnn', 'vit'\]"):
        network("resnet")


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_the_final_layernorm_divides_out_the_input_scale_unless_mean_residual(pool):
    """The overall halo abundance is a scale of the input: a head behind a per-token
    LayerNorm (cls, mean) sees almost the same features at 10x and 100x the input, the
    mean_residual head sees them grow with it."""
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16, 16)
    features = {}
    for name in (pool, "mean_residual"):
        model = build_model("vit", {"preset": "small", "pool": name}, grid_size=16).eval()
        seen: list[torch.Tensor] = []
        model.head.register_forward_hook(
            lambda module, inputs, output, seen=seen: seen.append(inputs[0]))
        with torch.no_grad():
            model(10 * x)
            model(100 * x)
        features[name] = seen
    low, high = features[pool]
    assert torch.allclose(low, high, rtol=0.05, atol=0.05)
    low, high = features["mean_residual"]
    assert (high.norm(dim=1) > 5 * low.norm(dim=1)).all()

"""Exact detection, as a property over random valid configurations of both families: build →
save (.pth and .safetensors) → load_model (strict) → the same configuration and a bit-identical
forward. Every dimension is read from the tensors (hidden widths as such, not through a ratio);
img_range comes back from the .safetensors header."""
from __future__ import annotations

import dataclasses

import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import mambairv2
from mambairv2.models.checkpoint import save_checkpoint
from mambairv2.models.mambair.config import MambaIRConfig
from mambairv2.models.mambairv2.config import MambaIRv2Config
from mambairv2.models.registry import family_of

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
HEADS = {1: (1,), 2: (1, 2), 3: (1, 3), 4: (1, 2, 4)}


@st.composite
def head_and_scale(draw):
    upsampler = draw(st.sampled_from(["pixelshuffle", "pixelshuffledirect", "nearest+conv", ""]))
    scale = {"pixelshuffle": st.sampled_from([2, 3, 4]), "pixelshuffledirect": st.sampled_from([2, 3, 4]),
             "nearest+conv": st.just(4), "": st.just(1)}[upsampler]
    return upsampler, draw(scale)


@st.composite
def v2_configs(draw) -> MambaIRv2Config:
    groups = draw(st.integers(1, 2))
    heads = draw(st.sampled_from([1, 2, 4]))
    embed = heads * draw(st.integers(max(1, 4 // heads), 32 // heads))
    ratio = draw(st.floats(0.3, 2.6, allow_nan=False).map(lambda r: round(r, 3)))
    hidden = int(embed * ratio)
    ffn = draw(st.sampled_from(["conv", "gated"]))
    assume(hidden >= 2 and (ffn == "conv" or hidden % 2 == 0))
    upsampler, scale = draw(head_and_scale())
    assume(upsampler != "nearest+conv" or embed >= 1)
    return MambaIRv2Config(
        embed_dim=embed, d_state=draw(st.integers(1, 6)), depths=tuple(draw(st.integers(1, 2)) for _ in range(groups)),
        num_heads=(heads,) * groups, window_size=draw(st.sampled_from([2, 4, 8])),
        inner_rank=draw(st.integers(1, 6)), num_tokens=draw(st.integers(1, 6)),
        # the gated MLP has no kernel size of its own (5 as released)
        convffn_kernel_size=draw(st.sampled_from([3, 5])) if ffn == "conv" else 5, mlp_ratio=ratio, upscale=scale,
        in_chans=draw(st.sampled_from([1, 3])), img_range=draw(st.sampled_from([1.0, 255.0])),
        upsampler=upsampler, resi_connection=draw(st.sampled_from(["1conv", "3conv"])) if embed >= 4 else "1conv",
        ffn=ffn)


@st.composite
def v1_configs(draw) -> MambaIRConfig:
    embed = draw(st.integers(30, 34))
    ratio = draw(st.floats(0.2, 2.4, allow_nan=False).map(lambda r: round(r, 3)))
    assume(int(embed * ratio) >= 1)
    upsampler = draw(st.sampled_from(["pixelshuffle", "pixelshuffledirect", ""]))
    scale = 1 if upsampler == "" else draw(st.sampled_from([2, 3, 4]))
    return MambaIRConfig(
        embed_dim=embed, d_state=draw(st.integers(1, 6)),
        depths=tuple(draw(st.integers(1, 2)) for _ in range(draw(st.integers(1, 2)))), mlp_ratio=ratio,
        upscale=scale, in_chans=draw(st.sampled_from([1, 3])), img_range=draw(st.sampled_from([1.0, 255.0])),
        upsampler=upsampler, resi_connection=draw(st.sampled_from(["1conv", "3conv"])))


def _width(config) -> int:
    return config.d_inner if isinstance(config, MambaIRConfig) else config.hidden


def _round_trip(config, tmp_path, size) -> None:
    torch.manual_seed(0)
    model = family_of(config).build(config).eval()
    with torch.no_grad():  # weights off their initial values (layer scales, biases), as trained
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    x = torch.rand(1, config.in_chans, *size)
    with torch.no_grad():
        expected = model(x)
    paths = [mambairv2.save_safetensors(model, tmp_path / "m.safetensors")]
    if config.img_range == 1.0:  # a .pth stores tensors only; the released img_range is assumed
        paths.append(save_checkpoint(tmp_path / "m.pth", model.state_dict()))
    for path in paths:
        loaded = mambairv2.load_model(path)
        got = loaded.config
        if path.suffix == ".pth":  # tensors say the width, not which ratio spelled it
            assert _width(got) == _width(config)
            got = dataclasses.replace(got, mlp_ratio=config.mlp_ratio, hidden_dim=config.hidden_dim)
        assert got == config, (path.suffix, loaded.config, config)
        assert not loaded.training
        with torch.no_grad():
            assert torch.equal(loaded(x), expected), path.suffix
        path.unlink()


@SETTINGS
@given(config=v2_configs(), size=st.tuples(st.integers(8, 16), st.integers(8, 16)))
def test_mambairv2_configurations_round_trip_exactly(tmp_path_factory, config, size):
    _round_trip(config, tmp_path_factory.mktemp("v2", numbered=True), size)


@SETTINGS
@given(config=v1_configs(), size=st.tuples(st.integers(8, 16), st.integers(8, 16)))
def test_mambair_configurations_round_trip_exactly(tmp_path_factory, config, size):
    _round_trip(config, tmp_path_factory.mktemp("v1", numbered=True), size)


def test_hidden_widths_that_are_no_exact_product_load():
    """The audit's cases: 28 × 2.2 → 61 and 78 × 1.6 → 124 are widths no ratio reproduces."""
    from mambairv2.models.mambairv2.detect import detect_config

    for embed, hidden in ((28, 61), (78, 124)):
        config = MambaIRv2Config(embed_dim=embed, depths=(1,), num_heads=(2,), d_state=2, inner_rank=2,
                                 num_tokens=2, hidden_dim=hidden, ffn="conv", window_size=4)
        assert config.hidden == hidden
        detected = detect_config(family_of(config).build(config).state_dict())
        assert detected.hidden == hidden
        assert dataclasses.replace(detected, mlp_ratio=1.0, hidden_dim=hidden) == config
    # a ratio whose product falls one short is kept as the width itself
    c = MambaIRv2Config(embed_dim=28, depths=(1,), num_heads=(2,), mlp_ratio=2.2, ffn="conv", window_size=4)
    assert c.hidden == int(28 * 2.2) and detect_config(family_of(c).build(c).state_dict()).hidden == c.hidden

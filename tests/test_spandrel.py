"""MambaIRv2 and MambaIR (v1) as spandrel architectures, tested the way spandrel tests its own
(its tests/util.py): hyper-parameters round-trip through ``load`` and through safetensors for
several configurations per family, detection refuses other architectures' state dicts, sizes
probed up to 64 px, the descriptor as a snapshot, image inference compared with stored outputs
(uint8, max single-pixel error 1), and every golden checkpoint of both families loaded and run
under ``torch.inference_mode()`` as ComfyUI does."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_path
from spandrel_support import import_spandrel

spandrel = import_spandrel()

from mambairv2 import load_model  # noqa: E402
from mambairv2.models.mambairv2 import variant_config  # noqa: E402
from mambairv2.integrations import spandrel as mambairv2_spandrel  # noqa: E402

V2_CASES = ["light_x2", "light_x3", "light_x4", "full_x2", "full_x3", "full_x4", "full_denoise",
            "full_jpeg_gray", "full_real_x4"]
V1_CASES = ["light_x2", "light_x4", "classic_x2", "classic_x3", "classic_x4", "denoise", "jpeg_gray",
            "realsr_x4"]
GOLDEN = [("golden", c) for c in V2_CASES] + [("golden_v1", c) for c in V1_CASES]
DATA = Path(__file__).resolve().parent / "data" / "spandrel"


@pytest.fixture(scope="module", autouse=True)
def installed():
    mambairv2_spandrel.install(ignore_duplicates=True)


def test_install_is_idempotent_and_refuses_a_second_copy_by_default():
    assert mambairv2_spandrel.install(ignore_duplicates=True) == []
    with pytest.raises(spandrel.DuplicateArchitectureError):
        mambairv2_spandrel.install()
    assert set(mambairv2_spandrel.ARCH_IDS) == {"MambaIRv2", "MambaIR"}
    assert all(a in spandrel.MAIN_REGISTRY for a in mambairv2_spandrel.ARCH_IDS)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """spandrel's tensor_to_image: clip(round(x·255)) as uint8, H×W×C."""
    return np.clip((t[0].permute(1, 2, 0).double().numpy() * 255.0).round(), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("folder,case", GOLDEN, ids=[f"{f}-{c}" for f, c in GOLDEN])
def test_golden_checkpoint_under_inference_mode(folder, case):
    """Loaded and run as ComfyUI does (inference mode: the parameters are inference tensors):
    equals ``load_model``'s clamped output to 1e-5, and the authors' own float64 output within
    spandrel's image tolerance (uint8, max single-pixel error 1)."""
    path = shared_path(folder, f"{case}.pth")
    meta = json.loads(shared_path(folder, "index.json").read_text())[case]
    io = torch.load(shared_path(folder, f"{case}_io.pt"), weights_only=True)
    x = io["input_a"].float()  # 37×45: exercises the model's own padding
    with torch.inference_mode():
        desc = spandrel.ModelLoader().load_from_file(str(path)).eval()
        assert all(p.is_inference() for p in desc.model.parameters())
        got = desc(x)
        again = desc(x)  # nothing cached by the first call may be stale or refused

    assert isinstance(desc, spandrel.ImageModelDescriptor)
    family = "MambaIR" if folder == "golden_v1" else "MambaIRv2"
    assert desc.architecture.id == family
    g = meta["network_g"]
    assert desc.scale == g["upscale"]
    assert desc.purpose == ("SR" if g["upscale"] > 1 else "Restoration")
    assert desc.input_channels == desc.output_channels == g["in_chans"]
    assert meta["arch"] in desc.tags
    assert desc.supports_half is False and desc.supports_bfloat16 is True
    assert desc.size_requirements.check(width=1, height=1)  # any size: the model pads itself
    assert sum(p.numel() for p in desc.model.parameters()) == meta["num_params"]

    with torch.no_grad():
        expected = load_model(path)(x).clamp(0, 1)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-5, case
    assert torch.equal(got, again)
    authors = to_uint8(io["output_a"].clamp(0, 1))
    diff = np.abs(to_uint8(got).astype(int) - authors.astype(int))
    assert diff.max() <= 1, (case, int(diff.max()))


# -- spandrel's assert_loads_correctly: hyper-parameters round-trip ---------------------------
def _v2(**kw):
    # convffn_kernel_size is left at its default where ffn="gated" does not use it (spandrel's
    # ignore_parameters: it cannot be read back from such a state dict)
    from mambairv2 import MambaIRv2Config

    base = dict(embed_dim=24, d_state=4, depths=(1,), num_heads=(2,), window_size=8, inner_rank=8,
                num_tokens=8, upscale=2, upsampler="pixelshuffledirect")
    return MambaIRv2Config(**{**base, **kw})


def _v1(**kw):
    from mambairv2 import MambaIRConfig

    base = dict(embed_dim=30, d_state=4, depths=(1,), mlp_ratio=1.5, upscale=2,
                upsampler="pixelshuffledirect")
    return MambaIRConfig(**{**base, **kw})


CONFIGS = {
    "v2-light-x2": lambda: _v2(),
    "v2-conv-ffn-x3-3conv": lambda: _v2(embed_dim=32, depths=(1, 2), num_heads=(2, 4), ffn="conv",
                                        mlp_ratio=2.0, upscale=3, upsampler="pixelshuffle", convffn_kernel_size=3,
                                        resi_connection="3conv", d_state=6, inner_rank=12, num_tokens=16),
    "v2-nearest-conv-x4": lambda: _v2(upscale=4, upsampler="nearest+conv", window_size=4, ffn="conv"),
    "v2-denoise-gray": lambda: _v2(upscale=1, upsampler="", in_chans=1, num_heads=(3,), embed_dim=24),
    "v1-light-x2": lambda: _v1(),
    "v1-classic-x3-3conv": lambda: _v1(embed_dim=36, d_state=6, depths=(1, 2), mlp_ratio=2.0, upscale=3,
                                       upsampler="pixelshuffle", resi_connection="3conv"),
    "v1-x4-pixelshuffle": lambda: _v1(upscale=4, upsampler="pixelshuffle", depths=(2,)),
    "v1-jpeg-gray": lambda: _v1(upscale=1, upsampler="", in_chans=1, mlp_ratio=1.2),
}


def _build(name: str) -> torch.nn.Module:
    from mambairv2.models import FAMILIES

    config = CONFIGS[name]()
    family = next(f for f in FAMILIES if isinstance(config, f.config_class))
    return family.build(config).eval()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_hyperparameters_round_trip_through_load_and_safetensors(name):
    import safetensors.torch

    model = _build(name)
    arch = next(a.architecture for a in spandrel.MAIN_REGISTRY.architectures("detection")
                if a.architecture.id == type(model).__name__)
    sd = model.state_dict()
    assert arch.detect(sd)
    x = torch.rand(1, model.config.in_chans, 11, 13)
    with torch.no_grad():
        expected = model(x)
    for label, state in (("state dict", sd), ("safetensors", safetensors.torch.load(safetensors.torch.save(sd)))):
        loaded = arch.load(state)
        assert type(loaded.model) is type(model), label
        assert loaded.model.config == model.config, (label, loaded.model.config, model.config)
        with torch.no_grad():
            assert torch.equal(loaded.model.eval()(x), expected), label
    # and through the whole registry, from a file, as chaiNNer and ComfyUI load
    assert spandrel.MAIN_REGISTRY.load(dict(sd)).architecture.id == arch.id


@pytest.mark.parametrize("name", ["v2-light-x2", "v2-nearest-conv-x4", "v1-light-x2", "v1-jpeg-gray"])
def test_size_requirements_probed_up_to_64_px(name):
    """spandrel's assert_size_requirements: candidates from the minimum in steps of the
    multiple, tested two at a time as width and height (non-square), plus sizes up to 64."""
    model = _build(name)
    with torch.inference_mode():
        desc = spandrel.MAIN_REGISTRY.load(model.state_dict())
    req = desc.size_requirements
    assert (req.minimum, req.multiple_of, req.square) == (1, 1, False)
    sizes = [(1, 2), (3, 4), (5, 6), (7, 8), (1, 64), (64, 1), (17, 31), (63, 64), (64, 64)]
    for w, h in sizes:
        assert req.check(w, h)
        with torch.inference_mode():
            y = desc(torch.rand(1, desc.input_channels, h, w))
        assert y.shape == (1, desc.output_channels, h * desc.scale, w * desc.scale), (w, h)
        assert 0 <= y.min().item() and y.max().item() <= 1


def test_descriptor_snapshot():
    """The descriptor's fields for each family's released layouts (spandrel snapshots them)."""
    snapshot = json.loads((DATA / "descriptors.json").read_text())
    seen = {}
    for folder, case in GOLDEN:
        sd = torch.load(shared_path(folder, f"{case}.pth"), weights_only=True)["params"]
        with torch.inference_mode():
            d = spandrel.MAIN_REGISTRY.load(sd)
        seen[f"{folder}/{case}"] = {
            "architecture": d.architecture.id, "purpose": d.purpose, "tags": d.tags, "scale": d.scale,
            "input_channels": d.input_channels, "output_channels": d.output_channels,
            "supports_half": d.supports_half, "supports_bfloat16": d.supports_bfloat16,
            "size_requirements": [d.size_requirements.minimum, d.size_requirements.multiple_of,
                                  d.size_requirements.square],
            "tiling": d.tiling.name}
    assert seen == snapshot


# -- spandrel's assert_image_inference ----------------------------------------------------------
@pytest.mark.parametrize("model_name", ["v2_default", "v1_light_x2"])
def test_image_inference_matches_stored_outputs(model_name):
    """8×8 … 64×64 and a 96×80 crop of a real image (Set5 baby) through the float32 descriptor
    under inference mode, against outputs stored by tests/make_spandrel_outputs.py (float64
    reference operators): uint8, max single-pixel error 1."""
    from PIL import Image

    from make_spandrel_outputs import CROPS, SOURCE, model_files, source_image

    path = model_files()[model_name]
    if not Path(path).exists():
        pytest.skip(f"not found: {path}")
    image = source_image(shared_path(*SOURCE))  # skips where the shared data is absent
    with torch.inference_mode():
        desc = spandrel.ModelLoader().load_from_file(str(path)).eval()
    for crop, (h, w) in CROPS.items():
        x = torch.from_numpy(image[:h, :w].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        with torch.inference_mode():
            out = to_uint8(desc(x))
        stored = np.asarray(Image.open(DATA / f"{model_name}_{crop}.png"))
        assert out.shape == stored.shape == (h * desc.scale, w * desc.scale, 3), crop
        err = np.abs(out.astype(int) - stored.astype(int))
        assert err.max() <= 1, (crop, int(err.max()), float(err.mean()))


def test_bundled_safetensors_loads_through_spandrel():
    from mambairv2.models.catalog import bundled_path

    desc = spandrel.ModelLoader().load_from_file(str(bundled_path("default")))
    assert desc.architecture.id == "MambaIRv2" and desc.scale == 4
    assert "light" in desc.tags


def _other_architectures():
    """State dicts of small models built from spandrel's own classes → their spandrel id."""
    from spandrel.architectures.DAT import DAT
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.SPAN import SPAN
    from spandrel.architectures.SwinIR import SwinIR

    return {
        "SwinIR": SwinIR(embed_dim=12, depths=[2], num_heads=[2], window_size=8, upscale=2,
                         upsampler="pixelshuffledirect"),
        "SwinIR-classic": SwinIR(embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=8, upscale=4,
                                 upsampler="pixelshuffle", resi_connection="3conv"),
        "HAT": HAT(embed_dim=12, depths=[2], num_heads=[2], window_size=8, upscale=2, num_feat=16,
                   compress_ratio=2, squeeze_factor=4),
        "ESRGAN": ESRGAN(num_filters=8, num_blocks=1, scale=4),
        "SPAN": SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2),
        "DAT": DAT(embed_dim=12, depth=[2], num_heads=[2], split_size=[2, 4], upscale=2),
    }


def test_other_architectures_are_detected_as_before():
    from spandrel import ArchRegistry
    from spandrel.__helpers.canonicalize import canonicalize_state_dict

    without = ArchRegistry()
    without.add(*[a for a in spandrel.MAIN_REGISTRY.architectures("detection")
                  if a.architecture.id not in mambairv2_spandrel.ARCH_IDS])
    assert len(without) == len(spandrel.MAIN_REGISTRY) - len(mambairv2_spandrel.ARCH_IDS)
    for name, module in _other_architectures().items():
        sd = canonicalize_state_dict(module.state_dict())
        assert not mambairv2_spandrel.is_mambairv2_state_dict(sd), name
        before = without.load(dict(sd))
        after = spandrel.MAIN_REGISTRY.load(dict(sd))
        assert after.architecture.id == before.architecture.id, name
        assert after.architecture.id not in mambairv2_spandrel.ARCH_IDS, name
        assert (after.scale, after.input_channels, after.tags) == (before.scale, before.input_channels,
                                                                   before.tags), name


def test_no_other_architecture_claims_mambairv2_state_dicts():
    """Registry order cannot matter: only the family's own detection accepts its keys (the
    released layouts of both families, and the small configurations above)."""
    dicts = {name: (_build(name).state_dict(), name.split("-")[0]) for name in CONFIGS}
    for folder, case in GOLDEN:
        sd = torch.load(shared_path(folder, f"{case}.pth"), weights_only=True)["params"]
        dicts[f"{folder}/{case}"] = (sd, "v1" if folder == "golden_v1" else "v2")
    for name, (sd, family) in dicts.items():
        claims = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures("detection")
                  if a.detect(sd)]
        assert claims == [{"v1": "MambaIR", "v2": "MambaIRv2"}[family]], (name, claims)


def test_descriptor_fields_follow_the_configuration():
    fields = mambairv2_spandrel.descriptor_fields(variant_config("jpeg"))
    assert fields["purpose"] == "Restoration" and fields["scale"] == 1
    assert fields["input_channels"] == fields["output_channels"] == 1
    assert "jpeg" in fields["tags"]

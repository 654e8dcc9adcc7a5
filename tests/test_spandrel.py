"""MambaIRv2 as a spandrel architecture: every golden checkpoint loads through spandrel's own
``ModelLoader`` and computes what ``load_model`` computes; other architectures are detected as
before ``install()``."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import shared_path
from spandrel_support import import_spandrel

spandrel = import_spandrel()

from mambairv2 import load_model  # noqa: E402
from mambairv2.models.mambairv2 import variant_config  # noqa: E402
from mambairv2.integrations import spandrel as mambairv2_spandrel  # noqa: E402

GOLDEN_CASES = ["light_x2", "light_x3", "light_x4", "full_x2", "full_x3", "full_x4", "full_denoise",
                "full_jpeg_gray", "full_real_x4"]


@pytest.fixture(scope="module", autouse=True)
def installed():
    mambairv2_spandrel.install(ignore_duplicates=True)


def test_install_is_idempotent_and_refuses_a_second_copy_by_default():
    assert mambairv2_spandrel.install(ignore_duplicates=True) == []
    with pytest.raises(spandrel.DuplicateArchitectureError):
        mambairv2_spandrel.install()
    assert mambairv2_spandrel.ARCH_ID in spandrel.MAIN_REGISTRY


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_checkpoint_loads_through_spandrel(case):
    path = shared_path("golden", f"{case}.pth")
    meta = json.loads(shared_path("golden", "index.json").read_text())[case]
    io = torch.load(shared_path("golden", f"{case}_io.pt"), weights_only=True)  # its inputs
    desc = spandrel.ModelLoader().load_from_file(str(path)).eval()

    assert isinstance(desc, spandrel.ImageModelDescriptor)
    assert desc.architecture.id == "MambaIRv2"
    g = meta["network_g"]
    assert desc.scale == g["upscale"]
    assert desc.purpose == ("SR" if g["upscale"] > 1 else "Restoration")
    assert desc.input_channels == desc.output_channels == g["in_chans"]
    assert meta["arch"] in desc.tags
    assert desc.supports_half is False and desc.supports_bfloat16 is True
    assert desc.size_requirements.check(width=1, height=1)  # any size: the model pads itself
    assert sum(p.numel() for p in desc.model.parameters()) == meta["num_params"]

    ours = load_model(path)
    x = io["input_a"][:, :, :19, :21].float()  # odd size: exercises the model's own padding
    with torch.no_grad():
        expected = ours(x)
        assert (desc.model(x) - expected).abs().max().item() <= 1e-6
        # the descriptor's call API: one image, output clamped to [0, 1]
        assert (desc(x) - expected.clamp(0, 1)).abs().max().item() <= 1e-6


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
        assert after.architecture.id == before.architecture.id != "MambaIRv2", name
        assert (after.scale, after.input_channels, after.tags) == (before.scale, before.input_channels,
                                                                   before.tags), name


def test_no_other_architecture_claims_mambairv2_state_dicts():
    """Registry order cannot matter: only MambaIRv2's detection accepts its keys."""
    for name, scale in (("light", 4), ("base", 2), ("denoise", 1), ("jpeg", 1)):
        from mambairv2 import MambaIRv2

        sd = MambaIRv2(variant_config(name, scale=scale) if name in ("light", "base")
                       else variant_config(name)).state_dict()
        claims = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures("detection")
                  if a.detect(sd)]
        assert claims == ["MambaIRv2"], (name, claims)


def test_descriptor_fields_follow_the_configuration():
    fields = mambairv2_spandrel.descriptor_fields(variant_config("jpeg"))
    assert fields["purpose"] == "Restoration" and fields["scale"] == 1
    assert fields["input_channels"] == fields["output_channels"] == 1
    assert "jpeg" in fields["tags"]

"""ComfyUI's upscale-model path with the custom-node folder ``src/mambairv2/integrations/comfyui`` imported,
reproduced step by step from ComfyUI's source (comfy/utils.py ``load_torch_file``,
``state_dict_prefix_replace``, ``tiled_scale``; comfy_extras/nodes_upscale_model.py
``UpscaleModelLoader`` and ``ImageUpscaleWithModel``) and compared with ``mambairv2.restore``."""
from __future__ import annotations

import importlib.util
import itertools
import math

import numpy as np
import pytest
import torch

from conftest import REPO, shared_path
from spandrel_support import import_spandrel

spandrel = import_spandrel()

from mambairv2 import load_model
from mambairv2.inference import api as restore  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def custom_node():
    """ComfyUI imports every folder in custom_nodes/ as a module from its __init__.py."""
    spec = importlib.util.spec_from_file_location("comfyui_mambairv2",
                                                  REPO / "src" / "mambairv2" / "integrations" / "comfyui" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS == {}
    assert "MambaIRv2" in spandrel.MAIN_REGISTRY
    return module


# -- ComfyUI's steps, as its source does them --------------------------------------------------
def load_torch_file(path: str) -> dict:
    """comfy.utils.load_torch_file(path, safe_load=True) for .pth/.safetensors."""
    if path.lower().endswith((".safetensors", ".sft")):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    pl_sd = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in pl_sd:
        return pl_sd["state_dict"]
    if len(pl_sd) == 1:
        sd = next(iter(pl_sd.values()))
        return sd if isinstance(sd, dict) else pl_sd
    return pl_sd


def state_dict_prefix_replace(sd: dict, replace: dict) -> dict:
    for old, new in replace.items():
        for key in [k for k in sd if k.startswith(old)]:
            sd[new + key[len(old):]] = sd.pop(key)
    return sd


def upscale_model_loader(path: str):
    """UpscaleModelLoader: the file → an ImageModelDescriptor in eval mode."""
    sd = load_torch_file(path)
    if "module.layers.0.residual_group.blocks.0.norm1.weight" in sd:
        sd = state_dict_prefix_replace(sd, {"module.": ""})
    out = spandrel.ModelLoader().load_from_state_dict(sd).eval()
    if not isinstance(out, spandrel.ImageModelDescriptor):
        raise Exception("Upscale model must be a single-image model.")
    return out


def tiled_scale(samples, function, tile: int, overlap: int, upscale_amount: int, out_channels: int = 3):
    """comfy.utils.tiled_scale (2-D tiled_scale_multidim): tiles stepping by tile − overlap, each
    output tile weighted by a linear feather of round(overlap · scale) pixels at every edge."""
    b, _, h, w = samples.shape
    output = torch.empty(b, out_channels, h * upscale_amount, w * upscale_amount)
    for i in range(b):
        s = samples[i:i + 1]
        out = torch.zeros(1, out_channels, h * upscale_amount, w * upscale_amount)
        out_div = torch.zeros_like(out)
        positions = [range(0, n - overlap, tile - overlap) if n > tile else [0] for n in (h, w)]
        for it in itertools.product(*positions):
            crop, start = s, []
            for d, n in enumerate((h, w)):
                pos = max(0, min(n - overlap, it[d]))
                length = min(tile, n - pos)
                crop = crop.narrow(d + 2, pos, length)
                start.append(round(pos * upscale_amount))
            ps = function(crop)
            mask = torch.ones(1, 1, *ps.shape[2:])
            feather = round(overlap * upscale_amount)
            for d in (2, 3):
                if feather >= mask.shape[d]:
                    continue
                for t in range(feather):
                    a = (t + 1) / feather
                    mask.narrow(d, t, 1).mul_(a)
                    mask.narrow(d, mask.shape[d] - 1 - t, 1).mul_(a)
            o, o_d, p, m = out, out_div, ps, mask
            for d in (0, 1):
                length = min(p.shape[d + 2], o.shape[d + 2] - start[d])
                o, o_d = o.narrow(d + 2, start[d], length), o_d.narrow(d + 2, start[d], length)
                p, m = p.narrow(d + 2, 0, length), m.narrow(d + 2, 0, length)
            o.add_(p * m)
            o_d.add_(m)
        output[i:i + 1] = out / out_div
    return output


def image_upscale_with_model(upscale_model, image, tile: int = 512, overlap: int = 32):
    """ImageUpscaleWithModel on a B×H×W×C image in [0, 1] (tile 512, overlap 32; ComfyUI halves
    the tile after an out-of-memory error)."""
    in_img = image.movedim(-1, -3)
    s = tiled_scale(in_img, lambda a: upscale_model(a.float()), tile=tile, overlap=overlap,
                    upscale_amount=upscale_model.scale, out_channels=upscale_model.output_channels)
    return torch.clamp(s.movedim(-3, -1), min=0, max=1.0)


# -- the tests ---------------------------------------------------------------------------------
def _image(h: int, w: int) -> torch.Tensor:
    from PIL import Image

    path = sorted(shared_path("data", "sr", "Set5", "LR_bicubic", "X4").iterdir())[0]
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)[:h, :w] / 255.0
    return torch.from_numpy(arr)[None]  # 1×H×W×C, ComfyUI's IMAGE layout


@pytest.mark.parametrize("case", ["light_x2", "full_real_x4"])
def test_comfyui_upscale_equals_restore(case, tmp_path):
    path = shared_path("golden", f"{case}.pth")
    model = upscale_model_loader(str(path))
    assert model.architecture.id == "MambaIRv2"
    image = _image(24, 35)  # one 512 tile: no seams
    got = image_upscale_with_model(model, image)
    expected = restore(load_model(path), image[0].permute(2, 0, 1)).permute(1, 2, 0)[None]
    assert got.shape == expected.shape == (1, 24 * model.scale, 35 * model.scale, 3)
    # float32 rounding only: the feather weights (·a then ÷a) and the channels-last input view
    assert (got - expected).abs().max().item() <= 1e-5


def test_comfyui_loads_dataparallel_checkpoints(tmp_path):
    """A ``module.``-prefixed state dict: ComfyUI's own strip is keyed on SwinIR's key, spandrel's
    canonicalisation removes the prefix."""
    sd = torch.load(shared_path("golden", "light_x2.pth"), weights_only=True)["params"]
    file = tmp_path / "ddp.pth"
    torch.save({"params": {f"module.{k}": v for k, v in sd.items()}}, file)
    model = upscale_model_loader(str(file))
    assert model.architecture.id == "MambaIRv2" and model.scale == 2


def test_comfyui_tiled_upscale_with_the_bundled_model():
    """The OOM fallback's smaller tiles (scaled down here: 32-pixel tiles, 8 overlap) on a real
    image: the feathered seams stay close to the whole-image restore."""
    from mambairv2.models.catalog import bundled_path

    path = bundled_path("default")
    model = upscale_model_loader(str(path))
    image = _image(40, 56)
    whole = restore(load_model(path), image[0].permute(2, 0, 1)).permute(1, 2, 0)[None]
    single = image_upscale_with_model(model, image)  # 512 tile: one tile
    assert (single - whole).abs().max().item() <= 1e-5
    tiled = image_upscale_with_model(model, image, tile=32, overlap=8)
    mse = ((tiled - whole) ** 2).mean().item()
    psnr = 10 * math.log10(1 / mse)
    assert psnr > 35, psnr

"""ComfyUI's upscale-model path with the custom-node folder ``src/mambairv2/integrations/comfyui`` imported,
reproduced step by step from ComfyUI's source (comfy/utils.py ``load_torch_file``,
``state_dict_prefix_replace``, ``tiled_scale``; comfy_extras/nodes_upscale_model.py
``UpscaleModelLoader`` and ``ImageUpscaleWithModel``) under ComfyUI's real conditions: every
node runs inside ``torch.inference_mode()`` (the loader too, so the parameters are inference
tensors), float32 input, 512-px tiles with 32 overlap and the feather blend, tile halving on
out-of-memory (giving up below 128), the ``module.`` prefix and the alpha path; for both
families; compared with ``mambairv2.restore``."""
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
from mambairv2.inference import restore  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def custom_node():
    """ComfyUI imports every folder in custom_nodes/ as a module from its __init__.py."""
    spec = importlib.util.spec_from_file_location("comfyui_mambairv2",
                                                  REPO / "src" / "mambairv2" / "integrations" / "comfyui" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS == {}
    assert "MambaIRv2" in spandrel.MAIN_REGISTRY and "MambaIR" in spandrel.MAIN_REGISTRY
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


@torch.inference_mode()  # ComfyUI's executor runs every node so
def upscale_model_loader(path: str):
    """UpscaleModelLoader: the file → an ImageModelDescriptor in eval mode."""
    sd = load_torch_file(path)
    if "module.layers.0.residual_group.blocks.0.norm1.weight" in sd:
        sd = state_dict_prefix_replace(sd, {"module.": ""})
    out = spandrel.ModelLoader().load_from_state_dict(sd).eval()
    if not isinstance(out, spandrel.ImageModelDescriptor):
        raise Exception("Upscale model must be a single-image model.")
    return out


@torch.inference_mode()
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


class OOM(RuntimeError):
    """Stands for model_management.OOM_EXCEPTION (torch.cuda.OutOfMemoryError)."""


@torch.inference_mode()
def image_upscale_with_model(upscale_model, image, tile: int = 512, overlap: int = 32):
    """ImageUpscaleWithModel on a B×H×W×C image in [0, 1]: tile 512, overlap 32, halved after an
    out-of-memory error until below 128; an alpha channel is upscaled separately (bilinear)."""
    in_img = image.movedim(-1, -3)
    alpha = None
    if in_img.shape[1] == 4:
        in_img, alpha = in_img[:, :3], in_img[:, 3:]
    while True:
        try:
            s = tiled_scale(in_img, lambda a: upscale_model(a.float()), tile=tile, overlap=overlap,
                            upscale_amount=upscale_model.scale, out_channels=upscale_model.output_channels)
            break
        except OOM:
            tile //= 2
            if tile < 128:
                raise
    if alpha is not None:
        alpha = torch.nn.functional.interpolate(alpha, size=s.shape[-2:], mode="bilinear")
        s = torch.cat([s, alpha], 1)
    return torch.clamp(s.movedim(-3, -1), min=0, max=1.0)


class RunsOutOfMemory:
    """The descriptor, failing like a GPU out of memory on inputs larger than ``limit`` px."""

    def __init__(self, desc, limit: int) -> None:
        self.desc, self.limit, self.tiles = desc, limit, []
        self.scale, self.output_channels = desc.scale, desc.output_channels

    def __call__(self, x):
        if max(x.shape[-2:]) > self.limit:
            raise OOM("CUDA out of memory (stand-in)")
        self.tiles.append(tuple(x.shape[-2:]))
        assert x.dtype == torch.float32 and torch.is_inference_mode_enabled()
        return self.desc(x)


# -- the tests ---------------------------------------------------------------------------------
def _image(h: int, w: int) -> torch.Tensor:
    from PIL import Image

    path = sorted(shared_path("data", "sr", "Set5", "LR_bicubic", "X4").iterdir())[0]
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)[:h, :w] / 255.0
    return torch.from_numpy(arr)[None]  # 1×H×W×C, ComfyUI's IMAGE layout


CASES = [("golden", "light_x2"), ("golden", "full_real_x4"), ("golden_v1", "light_x2"),
         ("golden_v1", "realsr_x4")]


@pytest.mark.parametrize("folder,case", CASES, ids=[f"{f}-{c}" for f, c in CASES])
def test_comfyui_upscale_equals_restore(folder, case):
    path = shared_path(folder, f"{case}.pth")
    model = upscale_model_loader(str(path))
    assert model.architecture.id == ("MambaIR" if folder == "golden_v1" else "MambaIRv2")
    assert all(p.is_inference() for p in model.model.parameters())
    image = _image(24, 35)  # one 512 tile: no seams
    got = image_upscale_with_model(model, image)
    expected = restore(load_model(path), image[0].permute(2, 0, 1)).permute(1, 2, 0)[None]
    assert got.shape == expected.shape == (1, 24 * model.scale, 35 * model.scale, 3)
    # float32 rounding only: the feather weights (·a then ÷a) and the channels-last input view
    assert (got - expected).abs().max().item() <= 1e-5

    # RGBA: the colour goes through the model, alpha is resized on its own
    rgba = torch.cat([image, torch.rand(1, 24, 35, 1)], -1)
    got4 = image_upscale_with_model(model, rgba)
    assert got4.shape == (1, 24 * model.scale, 35 * model.scale, 4)
    assert (got4[..., :3] - expected).abs().max().item() <= 1e-5


# the two smallest golden networks: the test runs a dozen tiles
@pytest.mark.parametrize("folder,case", [("golden", "full_real_x4"), ("golden_v1", "realsr_x4")])
def test_comfyui_halves_the_tile_on_out_of_memory(folder, case):
    """512 fails, 256 fails, 128 runs: the result is the same image; below 128 ComfyUI gives up."""
    model = upscale_model_loader(str(shared_path(folder, f"{case}.pth")))
    image = _image(40, 56)
    expected = image_upscale_with_model(model, image)
    tight = RunsOutOfMemory(model, limit=128)
    tight_image = torch.nn.functional.interpolate(image.movedim(-1, 1), size=(136, 150),
                                                  mode="bilinear").movedim(1, -1)
    got = image_upscale_with_model(tight, tight_image)
    assert tight.tiles and max(max(t) for t in tight.tiles) <= 128
    assert got.shape == (1, 136 * model.scale, 150 * model.scale, 3)
    small = RunsOutOfMemory(model, limit=64)  # 512, 256, 128 fail; 64 is below ComfyUI's floor
    with pytest.raises(OOM):
        image_upscale_with_model(small, tight_image)
    assert small.tiles == []
    # a tile that fits (56 px ≤ 128): one call, the same as without the failures
    fits = RunsOutOfMemory(model, limit=128)
    assert torch.equal(image_upscale_with_model(fits, image), expected)


def test_comfyui_loads_dataparallel_checkpoints(tmp_path):
    """A ``module.``-prefixed state dict: ComfyUI's own strip is keyed on SwinIR's key, spandrel's
    canonicalisation removes the prefix."""
    sd = torch.load(shared_path("golden", "light_x2.pth"), weights_only=True)["params"]
    file = tmp_path / "ddp.pth"
    torch.save({"params": {f"module.{k}": v for k, v in sd.items()}}, file)
    model = upscale_model_loader(str(file))
    assert model.architecture.id == "MambaIRv2" and model.scale == 2
    sd1 = torch.load(shared_path("golden_v1", "light_x2.pth"), weights_only=True)["params"]
    file1 = tmp_path / "ddp_v1.pth"
    torch.save({"params": {f"module.{k}": v for k, v in sd1.items()}}, file1)
    model1 = upscale_model_loader(str(file1))
    assert model1.architecture.id == "MambaIR" and model1.scale == 2


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

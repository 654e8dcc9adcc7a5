"""ERF, attentive map, SGN and LAM on a tiny random model: shapes and the properties each
analysis must have, and the figure commands writing readable PNGs."""
import numpy as np
import pytest
import torch
from PIL import Image

import mambairv2
from mambairv2.analysis.attentive_map import attentive_maps
from mambairv2.analysis.capture import capture_assm
from mambairv2.analysis.erf import centre_gradient, effective_receptive_field
from mambairv2.analysis.lam import blur_path, gaussian_kernel, gini, lam, _filter
from mambairv2.analysis.sgn_map import sgn_routes
from mambairv2.cli.main import main


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = mambairv2.create_model("light", scale=2, depths=(2, 1), num_heads=(4, 4), window_size=8).eval()
    with torch.no_grad():  # layer scales of 1e-4 would hide the layers: make them matter
        for name, p in m.named_parameters():
            if name.endswith(("scale1", "scale2")):
                p.fill_(1.0)
    return m


def _image(h=16, w=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g)


def test_erf_map_is_the_summed_gradient_magnitude(model):
    xs = [_image(seed=1), _image(seed=2)]
    erf = effective_receptive_field(model, xs)
    assert erf.map.shape == (16, 24) and (erf.map >= 0).all() and erf.images == 2
    assert all(p.grad is None for p in model.parameters())  # weights untouched
    total = 0.0
    for x in xs:
        x = x.clone().requires_grad_(True)
        y = model(x)
        y[:, :, y.shape[2] // 2, y.shape[3] // 2].sum().backward()
        total += float(x.grad.abs().sum())
    assert erf.total == pytest.approx(float(erf.map.sum()), rel=1e-9)
    assert erf.total == pytest.approx(total, rel=1e-4)
    model.zero_grad(set_to_none=True)
    assert centre_gradient(model, xs[0]).shape == xs[0].shape
    with pytest.raises(ValueError):
        effective_receptive_field(model, [_image(16, 16), _image(16, 24)])


def test_capture_does_not_change_the_output_and_prompts_come_from_the_pool(model):
    x = _image()
    with torch.no_grad():
        plain = model(x)
    out, records = capture_assm(model, x)
    assert torch.equal(out, plain)
    assert len(records) == 3
    for r in records:
        assert r.size == (16, 24) and r.C.shape == r.prompt.shape == (16 * 24, model.config.d_state)
        assert torch.allclose(r.prompt, r.pool[r.groups])


def test_attentive_map_is_a_cosine_per_layer(model):
    maps = attentive_maps(model, _image(), (5, 7))
    assert maps.maps.shape == (3, 16, 24)
    assert np.isfinite(maps.maps).all() and np.abs(maps.maps).max() <= 1 + 1e-6
    assert all(0 <= g < model.config.num_tokens for g in maps.groups)
    with pytest.raises(ValueError):
        attentive_maps(model, _image(), (16, 0))


def test_sgn_order_is_a_stable_sort_by_route(model):
    layers = sgn_routes(model, _image(13, 20))  # padded to 16×24
    assert len(layers) == 3
    for layer in layers:
        groups = layer.groups.reshape(-1)
        assert layer.groups.shape == (16, 24)
        assert np.array_equal(np.sort(layer.order), np.arange(groups.size))  # a bijection
        sorted_groups = groups[layer.order]
        assert (np.diff(sorted_groups) >= 0).all()
        same = np.diff(sorted_groups) == 0
        assert (np.diff(layer.order)[same] > 0).all()  # ties keep raster order
        assert np.array_equal(layer.unfolded(np.arange(groups.size)).reshape(-1), layer.order)


def test_blur_path_ends_at_the_input_and_its_derivatives_integrate_to_the_change():
    x = _image(12, 12).double()
    images, derivs = blur_path(x, sigma=2.0, steps=8, kernel_size=9)
    assert images.shape == derivs.shape == (8, 3, 12, 12)
    assert torch.allclose(images[-1], x[0])
    start = _filter(x, gaussian_kernel(9, 2.0))[0]
    assert torch.allclose(derivs.sum(0) / 8, x[0] - start)


def test_gini_and_lam_diffusion_index(model):
    assert gini(np.ones(100)) == pytest.approx(0, abs=1e-9)
    assert gini(np.eye(10)[0]) == pytest.approx(0.9, abs=1e-5)
    result = lam(model, _image(), (4, 6, 8, 10), steps=3)
    assert result.attribution.shape == (16, 24) and result.output.shape == (3, 32, 48)
    assert result.attribution.max() == pytest.approx(1.0) and result.attribution.min() >= 0
    assert 0 <= result.diffusion_index <= 1


def test_figure_commands_write_pngs(model, tmp_path, capsys):
    from mambairv2.models import save_safetensors

    weights = tmp_path / "tiny.safetensors"
    save_safetensors(model, weights)
    img = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 18, 3)) * 255).astype(np.uint8)).save(img)
    common = ["--weights", str(weights), "--image", str(img)]
    runs = {
        "erf": ["analyze", "erf", *common, "--image", str(img)],
        "attention": ["analyze", "attention", *common, "--pixel", "3,4"],
        "sgn": ["analyze", "sgn", *common],
        "lam": ["analyze", "lam", *common, "--box", "4,4,8,8", "--steps", "2"],
    }
    for name, argv in runs.items():
        out = tmp_path / f"{name}.png"
        assert main(argv + ["-o", str(out)]) == 0, name
        with Image.open(out) as im:
            assert im.size[0] > 200 and im.size[1] > 100
    assert main(["analyze", "attention", *common, "--pixel", "99,0", "-o", str(tmp_path / "x.png")]) == 2
    assert main(["analyze", "lam", *common, "--box", "1,2", "-o", str(tmp_path / "x.png")]) == 2
    assert main(["analyze", "sgn", "--weights", "nonexistent", "--image", str(img)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (tmp_path / "empty.png").write_bytes(b"")
    for bad, reason in ((tmp_path / "missing.png", "no such file"), (tmp_path / "empty.png", "empty file")):
        assert main(["analyze", "sgn", "--weights", str(weights), "--image", str(bad)]) == 2
        assert capsys.readouterr().err.strip() == f"error: {bad}: {reason}"


def test_images_are_read_as_restore_reads_them(tmp_path):
    """16-bit PNGs keep their precision, alpha is dropped, gray and colour convert both ways."""
    from mambairv2.analysis.inputs import image_tensor
    from mambairv2.utils.imageio import ImageData, write_image

    rng = np.random.default_rng(1)
    rgba16 = rng.integers(0, 65536, (5, 7, 4), dtype=np.uint16)
    write_image(tmp_path / "a.png", ImageData(rgba16))
    x = image_tensor(tmp_path / "a.png", 3)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(rgba16[..., :3].astype(np.float32) / 65535).permute(2, 0, 1)[None])
    gray = image_tensor(tmp_path / "a.png", 1)
    expected = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert gray.shape == (1, 1, 5, 7) and torch.allclose(gray, expected)
    Image.fromarray(rng.integers(0, 256, (4, 6), dtype=np.uint8)).save(tmp_path / "g.png")
    colour = image_tensor(tmp_path / "g.png", 3)
    assert colour.shape == (1, 3, 4, 6) and torch.equal(colour[:, 0], colour[:, 2])

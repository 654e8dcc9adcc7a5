"""Routing, SGN, padding and input sizes."""
import pytest
import torch

import mambairv2
from mambairv2.models.mambairv2.assm import permute_tokens
from mambairv2.ops import sgn_order
from mambairv2.models.layers.stem import mirror_pad

TINY = dict(embed_dim=12, depths=(2,), num_heads=(2,), d_state=4, inner_rank=4, num_tokens=6)


def tiny(scale=2, **kw):
    return mambairv2.create_model("light", scale=scale, **{**TINY, **kw}).eval()


def test_sgn_order_is_stable_and_inverted():
    groups = torch.tensor([[2, 0, 2, 1, 0, 2], [0, 0, 0, 0, 0, 0]])
    order, inverse = sgn_order(groups)
    assert order[0].tolist() == [1, 4, 3, 0, 2, 5]  # ties keep raster order
    assert order[1].tolist() == list(range(6))
    x = torch.randn(2, 6, 3)
    torch.testing.assert_close(permute_tokens(permute_tokens(x, order), inverse), x, rtol=0, atol=0)


@pytest.mark.parametrize("h,w", [(5, 7), (20, 33), (16, 16)])
def test_mirror_pad_equals_released_where_it_worked(h, w):
    x = torch.randn(1, 2, h, w)
    H, W = -(-h // 16) * 16, -(-w // 16) * 16
    released = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :H, :]
    released = torch.cat([released, torch.flip(released, [3])], 3)[:, :, :, :W]
    if H <= 2 * h and W <= 2 * w:
        torch.testing.assert_close(mirror_pad(x, H, W), released, rtol=0, atol=0)
    else:
        assert released.shape[-2:] != (H, W)  # the released padding breaks here
    out = mirror_pad(x, H, W)
    assert out.shape[-2:] == (H, W)
    torch.testing.assert_close(out[..., :h, :w], x, rtol=0, atol=0)


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (7, 40), (17, 16)])
@pytest.mark.parametrize("scale", [1, 3])
def test_any_size_any_batch(h, w, scale):
    m = tiny(scale) if scale > 1 else mambairv2.create_model("denoise", **TINY).eval()
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y = m(x)
        y1 = m(x[1:])
    assert y.shape == (2, 3, h * scale, w * scale)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[1:], y1, rtol=1e-5, atol=1e-5)  # batch items are independent


def test_eval_routing_is_deterministic_gumbel_is_seedable():
    m = tiny()
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        a, b = m(x), m(x)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        m.set_routing("gumbel", seed=3)
        g1 = m(x)
        m.set_routing("gumbel", seed=3)
        g2 = m(x)
        m.set_routing("gumbel", seed=4)
        g3 = m(x)
        m.set_routing("argmax")
        c = m(x)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    assert not torch.equal(g1, g3) and not torch.equal(g1, a)
    torch.testing.assert_close(c, a, rtol=0, atol=0)
    with pytest.raises(ValueError):
        m.set_routing("random")


def test_training_uses_gumbel_and_routes_get_gradients():
    m = tiny().train()
    x = torch.rand(2, 3, 16, 16)
    m(x).abs().mean().backward()
    route_grad = m.layers[0].residual_group.layers[0].assm.route[0].weight.grad
    prompt_grad = m.layers[0].residual_group.layers[0].embeddingA.weight.grad
    assert route_grad is not None and route_grad.abs().sum() > 0
    assert prompt_grad is not None and prompt_grad.abs().sum() > 0


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match="expected a B×3×H×W"):
        tiny()(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("h,w", [(16, 16), (16, 48), (48, 32), (64, 64)])
def test_window_plan_attention_equals_released_roll_partition_and_full_mask(h, w, shifted, grad):
    """Gathering tokens by the window plan, attending per mask group and scatter-adding back
    gives exactly the released roll → partition → full shift mask → reverse → roll back, both
    through SDPA (inference) and through the plain formula used on CPU when the bias needs a
    gradient (training)."""
    from mambairv2.models.mambairv2.attention import (
        WindowAttention,
        relative_position_index,
        shifted_window_mask,
        window_partition,
        window_plan,
    )

    torch.manual_seed(0)
    ws, heads, c, b = 16, 2, 8, 2
    shift = ws // 2 if shifted else 0
    attn = WindowAttention(c, ws, heads).double()
    wqkv = torch.nn.Linear(c, 3 * c).double()
    x = torch.randn(b, h * w, c, dtype=torch.float64)
    rpi = relative_position_index(ws)
    plan = window_plan(b, h, w, ws, shift, torch.device("cpu"))
    assert sorted(plan.index.tolist()) == list(range(b * h * w))
    with torch.set_grad_enabled(grad):
        y = attn(wqkv(x.reshape(-1, c)[plan.index]), rpi, plan)
    assert y.requires_grad == grad
    got = torch.zeros(b * h * w, c, dtype=torch.float64).index_add(0, plan.index, y).view(b, h, w, c)
    # the released computation
    qkv = wqkv(x).view(b, h, w, 3 * c)
    if shift:
        qkv = torch.roll(qkv, shifts=(-shift, -shift), dims=(1, 2))
    win = window_partition(qkv, ws)
    nw = (h // ws) * (w // ws)
    q, k, v = win.view(b * nw, ws * ws, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    a = (q * attn.scale) @ k.transpose(-2, -1) + attn.position_bias(rpi).unsqueeze(0)
    if shift:
        full = shifted_window_mask(h, w, ws, shift).double()
        a = (a.view(b, nw, heads, ws * ws, ws * ws) + full.unsqueeze(1).unsqueeze(0)).view(-1, heads, ws * ws, ws * ws)
    out = attn.proj((a.softmax(-1) @ v).transpose(1, 2).reshape(b * nw, ws * ws, c))
    want = out.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    if shift:
        want = torch.roll(want, shifts=(shift, shift), dims=(1, 2))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_forward_and_backward_under_bfloat16_autocast():
    """Mixed precision (as the trainer and bench use it) keeps the residual stream in float32."""
    model = tiny().train()
    x = torch.rand(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (2, 3, 32, 32) and torch.isfinite(y.float()).all()
    y.float().mean().backward()
    assert model.conv_first.weight.grad is not None and torch.isfinite(model.conv_first.weight.grad).all()
    with torch.no_grad():
        ref = model.eval()(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x)
    assert (half.float() - ref).abs().max() < 0.1

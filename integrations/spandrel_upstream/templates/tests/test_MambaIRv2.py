from spandrel.architectures.MambaIRv2 import MambaIRv2, MambaIRv2Arch

from .util import (
    ModelFile,
    TestImage,
    assert_image_inference,
    assert_loads_correctly,
    assert_size_requirements,
    disallowed_props,
    skip_if_unchanged,
)

skip_if_unchanged(__file__)

# the authors' checkpoints: the assets of their GitHub release v1.0, which their README links
RELEASE = "https://github.com/csguoh/MambaIR/releases/download/v1.0/"


def test_load():
    assert_loads_correctly(
        MambaIRv2Arch(),
        lambda: MambaIRv2(
            embed_dim=24,
            d_state=4,
            depths=[1],
            num_heads=[2],
            window_size=8,
            inner_rank=8,
            num_tokens=8,
        ),
        lambda: MambaIRv2(
            embed_dim=24,
            d_state=4,
            depths=[2, 1],
            num_heads=[2, 3],
            window_size=4,
            inner_rank=8,
            num_tokens=8,
            upscale=3,
        ),
        lambda: MambaIRv2(
            embed_dim=32,
            d_state=6,
            depths=[1, 2],
            num_heads=[2, 4],
            window_size=8,
            inner_rank=12,
            num_tokens=16,
            ffn="conv",
            mlp_ratio=2.0,
            upscale=3,
            upsampler="pixelshuffle",
            convffn_kernel_size=3,
            resi_connection="3conv",
        ),
        lambda: MambaIRv2(
            embed_dim=24,
            d_state=4,
            depths=[1],
            num_heads=[2],
            window_size=8,
            inner_rank=8,
            num_tokens=8,
            ffn="conv",
            upscale=4,
            upsampler="nearest+conv",
        ),
        lambda: MambaIRv2(
            embed_dim=24,
            d_state=4,
            depths=[1],
            num_heads=[2],
            window_size=8,
            inner_rank=8,
            num_tokens=8,
            ffn="conv",
            mlp_ratio=2.0,
            upscale=2,
            upsampler="pixelshuffle",
        ),
        lambda: MambaIRv2(
            embed_dim=24,
            d_state=4,
            depths=[1],
            num_heads=[3],
            window_size=8,
            inner_rank=8,
            num_tokens=8,
            ffn="conv",
            upscale=1,
            upsampler="",
        ),
        lambda: MambaIRv2(
            embed_dim=24,
            d_state=4,
            depths=[1],
            num_heads=[3],
            window_size=8,
            inner_rank=8,
            num_tokens=8,
            ffn="conv",
            upscale=1,
            upsampler="",
            in_chans=1,
        ),
        lambda: MambaIRv2(
            embed_dim=30,
            d_state=4,
            depths=[1],
            num_heads=[2],
            window_size=8,
            inner_rank=8,
            num_tokens=8,
            mlp_ratio=1.5,
            upscale=4,
        ),
    )


def test_size_requirements():
    model = MambaIRv2(
        embed_dim=24,
        d_state=4,
        depths=[1],
        num_heads=[2],
        window_size=8,
        inner_rank=8,
        num_tokens=8,
        upscale=2,
    )
    assert_size_requirements(MambaIRv2Arch().load(model.state_dict()))


def test_descriptor(snapshot):
    model = MambaIRv2(
        embed_dim=24,
        d_state=4,
        depths=[1, 1],
        num_heads=[2, 2],
        window_size=8,
        inner_rank=8,
        num_tokens=8,
        ffn="conv",
        upscale=1,
        upsampler="",
        in_chans=1,
    )
    descriptor = MambaIRv2Arch().load(model.state_dict())
    assert descriptor == snapshot(exclude=disallowed_props)
    assert isinstance(descriptor.model, MambaIRv2)


def test_official_MambaIRv2_lightSR_x4(snapshot):
    file = ModelFile.from_url(RELEASE + "mambairv2_lightSR_x4.pth")
    model = file.load_model()
    assert model == snapshot(exclude=disallowed_props)
    assert isinstance(model.model, MambaIRv2)
    assert_image_inference(
        file,
        model,
        [TestImage.SR_16, TestImage.SR_32, TestImage.SR_64],
    )


def test_official_MambaIRv2_classicSR_Base_x4(snapshot):
    file = ModelFile.from_url(RELEASE + "mambairv2_classicSR_Base_x4.pth")
    model = file.load_model()
    assert model == snapshot(exclude=disallowed_props)
    assert isinstance(model.model, MambaIRv2)
    assert_image_inference(file, model, [TestImage.SR_16, TestImage.SR_32])

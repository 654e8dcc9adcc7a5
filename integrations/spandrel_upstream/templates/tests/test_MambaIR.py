from spandrel.architectures.MambaIR import MambaIR, MambaIRArch

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

# the authors' checkpoints: the Google Drive files their README links (model summary table)
LIGHT_SR_X2 = (
    "https://drive.google.com/file/d/1eWovtH7YvEn2Bm9wBK5REOhbIgapsLxM/view?usp=sharing"
)


def test_load():
    assert_loads_correctly(
        MambaIRArch(),
        lambda: MambaIR(
            embed_dim=30,
            d_state=4,
            depths=[1],
            mlp_ratio=1.5,
            upscale=2,
            upsampler="pixelshuffledirect",
        ),
        lambda: MambaIR(
            embed_dim=36,
            d_state=6,
            depths=[1, 2],
            mlp_ratio=2.0,
            upscale=3,
            upsampler="pixelshuffle",
            resi_connection="3conv",
        ),
        lambda: MambaIR(
            embed_dim=30,
            d_state=4,
            depths=[2],
            upscale=4,
            upsampler="pixelshuffle",
        ),
        lambda: MambaIR(
            embed_dim=30,
            d_state=4,
            depths=[1],
            mlp_ratio=1.2,
            upscale=1,
            upsampler="",
        ),
        lambda: MambaIR(
            embed_dim=30,
            d_state=4,
            depths=[1],
            mlp_ratio=1.2,
            in_chans=1,
        ),
        lambda: MambaIR(
            embed_dim=60,
            d_state=4,
            depths=[1],
            mlp_ratio=1.5,
            upscale=2,
            upsampler="pixelshuffledirect",
            cab="light-06dc6cd",
        ),
        lambda: MambaIR(
            embed_dim=30,
            d_state=4,
            depths=[1],
            upscale=2,
            upsampler="pixelshuffledirect",
            cab="light-3ad5892",
        ),
        lambda: MambaIR(
            embed_dim=30,
            d_state=4,
            depths=[1],
            upscale=2,
            scan_directions=2,
            upsampler="pixelshuffle",
        ),
    )


def test_size_requirements():
    model = MambaIR(
        embed_dim=30,
        d_state=4,
        depths=[1],
        mlp_ratio=1.5,
        upscale=2,
        upsampler="pixelshuffledirect",
    )
    assert_size_requirements(MambaIRArch().load(model.state_dict()))


def test_descriptor(snapshot):
    model = MambaIR(embed_dim=30, d_state=4, depths=[1, 1], mlp_ratio=1.2, in_chans=1)
    descriptor = MambaIRArch().load(model.state_dict())
    assert descriptor == snapshot(exclude=disallowed_props)
    assert isinstance(descriptor.model, MambaIR)


def test_official_MambaIR_lightSR_x2(snapshot):
    file = ModelFile.from_url(LIGHT_SR_X2, name="MambaIR_lightSR_x2.pth")
    model = file.load_model()
    assert model == snapshot(exclude=disallowed_props)
    assert isinstance(model.model, MambaIR)
    assert_image_inference(file, model, [TestImage.SR_16, TestImage.SR_32])

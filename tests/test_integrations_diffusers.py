"""The diffusers drop-in, called through a real StableDiffusionPipeline built from tiny random components.

No hub weights and no network: the UNet and VAE are a few kB of random weights, the prompt embedding
is passed directly (no tokenizer or text encoder), and the feature extractor is a default
CLIPImageProcessor. Every image is benign (random VAE output, scikit-image photos, flat images);
blocking comes from painted stub scores or from a policy whose thresholds are zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from conftest import ScoreEmbedder, ScoreHead, painted  # noqa: E402
from PIL import Image  # noqa: E402

from genguard import Guard, Policy  # noqa: E402
from genguard.integrations.diffusers import GenguardSafetyChecker, SafetyResult, attach  # noqa: E402

BLOCK, ALLOW = (0.9, 0.9, 8), (0.1, 0.2, 30)  # painted (minor, sexual, face age): block / allow


def stub_guard() -> Guard:
    return Guard(embedder=ScoreEmbedder(), head=ScoreHead())


def to_vae_range(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 HWC frames -> an NCHW float tensor in [-1, 1], as a VAE decodes."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    return x * 2.0 - 1.0


def make_pipe(safety_checker: Any = None, *, feature_extractor: bool = True) -> Any:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPImageProcessor

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8, norm_num_groups=2, attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler, safety_checker=safety_checker,
        feature_extractor=CLIPImageProcessor() if feature_extractor else None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: Any, n: int = 2) -> Any:
    """Run the whole pipeline (2 steps, 32x32) from fixed prompt embeddings and seed."""
    embeds = torch.randn(n, 4, 8, generator=torch.Generator().manual_seed(1))
    return pipe(prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds), num_inference_steps=2,
                height=32, width=32, output_type="np", generator=torch.Generator().manual_seed(2))


# ------------------------------------------------------------------ the pipeline's own safety-check path
def test_torch_batch_blocked_image_is_black_and_callers_batch_untouched() -> None:
    checker = GenguardSafetyChecker(stub_guard())
    pipe = make_pipe(checker)
    batch = to_vae_range([painted(*ALLOW, size=32), painted(*BLOCK, size=32), painted(*ALLOW, size=32)])
    before = batch.clone()
    images, flags = pipe.run_safety_checker(batch, torch.device("cpu"), torch.float32)
    assert flags == [False, True, False]
    assert [v.decision for v in checker.last_verdicts] == ["allow", "block", "allow"]
    assert torch.equal(batch, before) and images is not batch
    assert torch.count_nonzero(images[1]) == 0
    assert torch.equal(images[0], batch[0]) and torch.equal(images[2], batch[2])


def test_numpy_batch_through_the_pipeline_path() -> None:
    checker = GenguardSafetyChecker(stub_guard())
    pipe = make_pipe(checker)
    batch = np.stack([painted(*BLOCK, size=24), painted(*ALLOW, size=24)]).astype(np.float32) / 255.0  # NHWC [0, 1]
    before = batch.copy()
    images, flags = pipe.run_safety_checker(batch, torch.device("cpu"), torch.float32)
    assert flags == [True, False]
    np.testing.assert_array_equal(batch, before)
    assert images.dtype == batch.dtype and images.shape == batch.shape
    assert not images[0].any() and np.array_equal(images[1], batch[1])


def test_nothing_withheld_returns_the_batch_itself() -> None:
    batch = to_vae_range([painted(*ALLOW, size=16)])
    result = GenguardSafetyChecker(stub_guard()).screen(batch)
    assert isinstance(result, SafetyResult) and result.images is batch and result.flags == [False]


# ------------------------------------------------------------------ options
def _roughness(a: np.ndarray) -> float:
    return float(np.abs(np.diff(a.astype(np.float32), axis=1)).mean())


def test_blur_replacement_is_a_smoothed_copy_in_unit_range() -> None:
    import skimage.data

    photo = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((64, 64)))
    marked = photo.copy()
    marked[0, 0] = (90, 90, 8)  # the stub reads its scores from this pixel: block
    checker = GenguardSafetyChecker(stub_guard(), replacement="blur")
    images, flags = checker(images=to_vae_range([marked]), clip_input=None)
    assert flags == [True]
    out = images[0].permute(1, 2, 0).numpy()
    assert out.shape == (64, 64, 3) and 0.0 <= out.min() and out.max() <= 1.0
    assert _roughness(out * 255) < 0.2 * _roughness(marked)
    arrays, _ = checker(images=np.stack([marked]).astype(np.float64) / 255.0)
    assert arrays.dtype == np.float64 and _roughness(arrays[0] * 255) < 0.2 * _roughness(marked)


def test_withhold_review_and_lists_keep_their_types() -> None:
    review = (0.3, 0.5, 12)  # both in the review band of the stub head's default policy
    frames = [painted(*review), painted(*ALLOW)]
    default = GenguardSafetyChecker(stub_guard())
    strict = GenguardSafetyChecker(stub_guard(), withhold=("review", "block"))
    assert default.screen(frames).flags == [False, False]
    result = strict.screen([Image.fromarray(f) for f in frames])
    assert result.flags == [True, False] and [v.decision for v in result.verdicts] == ["review", "allow"]
    assert isinstance(result.images, list) and isinstance(result.images[0], Image.Image)
    assert result.images[0].getbbox() is None  # all black
    assert strict.screen(tuple(frames)).images.__class__ is tuple


@pytest.mark.parametrize(
    "kwargs",
    [{"replacement": "pixelate"}, {"withhold": ("deny",)}, {"withhold": "block"}, {"tensor_range": (1.0, -1.0)},
     {"blur_radius": 0}],
)
def test_invalid_options_raise_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        GenguardSafetyChecker(stub_guard(), **kwargs)


def test_batches_of_the_wrong_rank_raise_value_error() -> None:
    checker = GenguardSafetyChecker(stub_guard())
    with pytest.raises(ValueError, match="NCHW"):
        checker.screen(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="NHWC"):
        checker.screen(np.zeros((8, 8, 3)))


# ------------------------------------------------------------------ whole pipeline, real bundled Guard
def test_full_pipeline_with_real_guard_matches_the_unchecked_output(guard: Guard) -> None:
    """Allowed images pass through untouched; withheld ones come out black; flags follow the verdicts."""
    unchecked = generate(make_pipe(None)).images
    checker = GenguardSafetyChecker(guard)
    out = generate(make_pipe(checker))
    flags = out.nsfw_content_detected
    assert flags == [v.decision == "block" for v in checker.last_verdicts] and len(flags) == 2
    for image, reference, flag in zip(out.images, unchecked, flags):
        np.testing.assert_array_equal(image, np.zeros_like(reference) if flag else reference)

    block_all = Guard(embedder=guard.embedder, head=guard.head, policy=Policy(0.0, 0.0, 0.0, 0.0))
    blocked = generate(make_pipe(GenguardSafetyChecker(block_all)))
    assert blocked.nsfw_content_detected == [True, True]
    assert not blocked.images.any()

    passthrough = generate(make_pipe(GenguardSafetyChecker(block_all, withhold=())))
    assert passthrough.nsfw_content_detected == [False, False]
    np.testing.assert_array_equal(passthrough.images, unchecked)


def test_attach_registers_the_component_and_moves_with_the_pipeline() -> None:
    pipe = make_pipe(None, feature_extractor=False)
    checker = attach(pipe, stub_guard(), replacement="blur")
    assert pipe.safety_checker is checker and pipe.components["safety_checker"] is checker
    assert pipe.config.safety_checker == ("genguard.integrations.diffusers", "GenguardSafetyChecker")
    assert type(pipe.feature_extractor).__name__ == "CLIPImageProcessor"
    pipe.to("cpu", torch.float32)
    assert pipe.device.type == "cpu" and checker.device.type == "cpu"
    assert generate(pipe, n=1).nsfw_content_detected == [checker.last_verdicts[0].blocked]
    with pytest.raises(ValueError, match="safety_checker"):
        attach(object(), stub_guard())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batches_stay_on_the_gpu() -> None:
    checker = GenguardSafetyChecker(stub_guard()).to("cuda")
    batch = to_vae_range([painted(*BLOCK, size=16), painted(*ALLOW, size=16)]).to("cuda", torch.float16)
    images, flags = checker(images=batch, clip_input=None)
    assert flags == [True, False] and images.device.type == "cuda" and images.dtype == torch.float16
    assert checker.device.type == "cuda" and torch.count_nonzero(images[0]) == 0


def test_the_runnable_docs_example_prints_what_the_docs_say(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "integrations.md").read_text()
    example = next(b.split("```", 1)[0] for b in text.split("```python\n")[1:] if "GenguardSafetyChecker(replacement" in b)
    exec(compile(example, "docs/integrations.md", "exec"), {})
    printed = capsys.readouterr().out.strip()
    assert printed == "[False, False] ['allow', 'allow']"
    assert printed in example

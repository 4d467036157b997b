"""The batched torch renderer draws the numpy renderer's pixels, within one level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tenku.world.render import render
from tenku.world.render_torch import render_batch
from tenku.world.rules import HOLDOUT
from tenku.world.sample import SamplerConfig, sample_scene
from tenku.world.spec import ObjectSpec, SceneSpec

# (width, height, frames, fps, scenes): square, 16:9, portrait, one frame, another frame rate
_CANVASES = [
    (64, 64, 17, 8.0, 120),
    (256, 144, 9, 8.0, 40),
    (48, 80, 13, 8.0, 60),
    (32, 32, 1, 8.0, 30),
    (64, 48, 25, 12.0, 50),
]


def _sampled() -> list[list[SceneSpec]]:
    """300 seeded scenes in batches of one canvas: many counting (up to 6), pillar and night."""
    rng = np.random.default_rng(14)
    batches = []
    for width, height, frames, fps, n in _CANVASES:
        cfg = SamplerConfig(
            width=width,
            height=height,
            frames=frames,
            fps=fps,
            backgrounds={"white": 1.0, "grey": 1.0, "sand": 1.0, "night": 3.0},
            counting_prob=0.3,
            count_range=(2, 6),
            pillar_prob=0.5,
        )
        batches.append([sample_scene(rng, cfg) for _ in range(n)])
    return batches


def _edge_cases() -> list[SceneSpec]:
    """Objects partly or wholly outside the canvas, on its edges, larger than it, and six alike."""
    objs = [
        ObjectSpec("red", "circle", "large", 0.0, 0.0),
        ObjectSpec("blue", "triangle", "large", 1.0, 1.0, "grow", scale=2.0),
        ObjectSpec("green", "diamond", "small", 0.05, 0.5, "left", speed=1.0),
    ]
    wide = [
        ObjectSpec("pink", "square", "large", 0.9, 0.3, "right", speed=1.0),
        ObjectSpec("cyan", "triangle", "small", 0.5, 0.02, "up", speed=0.7),
        ObjectSpec("yellow", "circle", "small", 0.45, 0.45, "bounce"),
    ]
    six = tuple(
        ObjectSpec("orange", "diamond", "small", (i + 0.5) / 6, 0.4, "fall") for i in range(6)
    )
    common = {"width": 32, "height": 16, "frames": 40}
    return [
        SceneSpec(
            objects=tuple(objs),
            pillar=True,
            background="night",
            stars=((0, 0), (0.99, 0.99)),
            **common,
        ),
        SceneSpec(objects=tuple(wide), pillar=True, **common),
        SceneSpec(objects=six, counting=True, background="sand", **common),
        SceneSpec(
            objects=(ObjectSpec("purple", "square", "large", 0.5, 0.5, "grow", scale=2.0),),
            **common,
        ),
    ]


def _compare(specs: list[SceneSpec], device: str) -> tuple[int, int]:
    """(pixels differing, pixels in all) after asserting no channel is off by more than 1."""
    got = render_batch(specs, device).cpu().numpy()
    want = np.stack([render(s) for s in specs])
    assert got.shape == want.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16)).max(-1)  # (N, T, H, W)
    assert diff.max() <= 1, f"max difference {diff.max()} on {device}"
    return int((diff > 0).sum()), diff.size


def _check_device(device: str) -> None:
    differing = total = 0
    for batch in [*_sampled(), _edge_cases()]:
        d, t = _compare(batch, device)
        differing, total = differing + d, total + t
    print(
        f"\n{device}: {differing} of {total} pixels differ by one level ({differing / total:.2e})"
    )
    assert differing / total < 1e-4


def test_matches_numpy_renderer_on_cpu():
    _check_device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_matches_numpy_renderer_on_cuda():
    _check_device("cuda")


def test_padded_slots_leave_scenes_alone():
    one, crowded = _edge_cases()[3], _edge_cases()[2]
    together = render_batch([one, crowded])
    assert torch.equal(together[0], render_batch([one])[0])
    assert np.array_equal(together[0].numpy(), render(one))


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("width", {"width": 48}),
        ("height", {"height": 32}),
        ("frames", {"frames": 9}),
        ("fps", {"fps": 12.0}),
    ],
)
def test_mismatched_batch_names_the_field(field, change):
    obj = (ObjectSpec("red", "circle", "small", 0.5, 0.5),)
    base = {"width": 64, "height": 64, "frames": 17, "fps": 8.0}
    specs = [SceneSpec(objects=obj, **base), SceneSpec(objects=obj, **{**base, **change})]
    with pytest.raises(ValueError, match=f"^{field}:"):
        render_batch(specs)


def test_empty_batch_is_an_error():
    with pytest.raises(ValueError, match="specs"):
        render_batch([])


def test_sampled_scenes_avoid_the_holdout():
    """sample_scene excludes held-out combinations itself; the renderer relies on that."""
    for batch in _sampled():
        for spec in batch:
            assert all(HOLDOUT.allows(o.colour, o.shape, o.motion) for o in spec.objects)

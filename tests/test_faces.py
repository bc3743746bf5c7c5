"""Face crops: geometry, the cache equals hand-computed pixels, transforms."""

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from fasflow.data import FaceDataset, build_loader, eval_transform, train_transform
from fasflow.faces import build_face_cache, crop_face, square_crop_box


def test_square_box_with_margin_and_clamp():
    assert square_crop_box((40, 40, 20, 10), 100, 100, margin=0.0) == (40, 35, 60, 55)
    assert square_crop_box((40, 40, 20, 20), 100, 100, margin=0.5) == (30, 30, 70, 70)
    assert square_crop_box((0, 0, 20, 20), 100, 100, margin=0.5) == (0, 0, 30, 30)
    assert square_crop_box(None, 64, 48, margin=0.2) == (0, 0, 64, 48)


def test_crop_equals_expected_pixels(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    path = tmp_path / "Data" / "a.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(array).save(path)
    manifest = pl.DataFrame(
        {"path": ["Data/a.png", "Data/a.png"], "box_x": [10.0, None], "box_y": [20.0, None], "box_w": [16.0, None], "box_h": [16.0, None]}
    )
    faces = build_face_cache(manifest, tmp_path, margin=0.0, size=16, threads=2)
    assert faces.shape == (2, 16, 16, 3) and faces.dtype == np.uint8
    # a 16 px box resized to 16 px is the exact pixels, untouched by re-encoding
    np.testing.assert_array_equal(faces[0], array[20:36, 10:26])
    whole = np.asarray(Image.fromarray(array).resize((16, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(faces[1], whole)


def test_unreadable_image_names_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"junk")
    manifest = pl.DataFrame({"path": ["bad.png"], "box_x": [None], "box_y": [None], "box_w": [None], "box_h": [None]}, schema_overrides={c: pl.Float64 for c in ("box_x", "box_y", "box_w", "box_h")})
    with pytest.raises(Exception, match="bad.png"):
        build_face_cache(manifest, tmp_path, 0.1, 8)


def test_crop_face_accepts_any_mode():
    image = Image.new("L", (30, 30), 128)
    assert crop_face(image, None, 0.2, 10).shape == (10, 10, 3)


def test_transforms_shapes_and_normalisation():
    faces = np.full((4, 40, 40, 3), 255, dtype=np.uint8)
    evaluated = eval_transform(32)(faces[0])
    assert evaluated.shape == (3, 32, 32) and evaluated.dtype == torch.float32
    assert evaluated[0].mean().item() == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)
    trained = train_transform(32, (0.08, 1.0))(faces[0])
    assert trained.shape == (3, 32, 32)


def test_crop_scale_bounds_the_crop_area():
    # A face whose left half is black and right half white: a crop covering the whole face
    # keeps both halves, a small crop (8% of the area) often lands on one colour only.
    face = np.zeros((40, 40, 3), dtype=np.uint8)
    face[:, 20:] = 255

    def spreads(scale):
        torch.manual_seed(0)
        transform = train_transform(16, scale)
        return [float(transform(face).std(dim=(1, 2)).max()) for _ in range(30)]

    assert min(spreads((1.0, 1.0))) > 0.5  # always both halves
    assert min(spreads((0.08, 0.08))) < 0.1  # some crops see one colour
    with pytest.raises(ValueError, match="train.crop_scale"):
        train_transform(16, (0.5, 0.2))


def test_loader_is_seeded():
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, size=(12, 20, 20, 3), dtype=np.uint8)
    dataset = FaceDataset(faces, np.arange(12) % 2, train_transform(16, (0.08, 1.0)))

    def first_batch(seed):
        torch.manual_seed(0)
        return next(iter(build_loader(dataset, 4, shuffle=True, seed=seed)))

    a, b, c = first_batch(5), first_batch(5), first_batch(6)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1]) or not torch.equal(a[0], c[0])

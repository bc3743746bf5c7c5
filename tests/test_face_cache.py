"""The face cache on disk: streamed in chunks, aligned with its manifest, every broken file survived."""

import json
import os
import tracemalloc

import numpy as np
import polars as pl
import pytest
from celeba_tree import LABEL_FILES, make_tree, write_image
from PIL import Image

import fasflow.faces as faces_module
from fasflow.errors import DataError
from fasflow.faces import (
    _header_of_length,
    build_face_cache,
    crop_face,
    decode_face,
    draft_scale,
    npy_header,
    write_face_cache,
)
from fasflow.ingest import ingest

SIZE, MARGIN = 40, 0.2  # crops of the 100x80 images are 70 px: no JPEG reduction at 40 px
SKIP = {"on_unreadable_image": "skip", "on_missing_image": "skip", "on_unsafe_path": "skip"}


@pytest.fixture
def split(tmp_path):
    """A hand-made tree (36 images of 100x80) and its ingested manifest as a parquet file."""
    root = tmp_path / "celeba"
    make_tree(root, subjects=6)
    table, _ = ingest(root, LABEL_FILES, {})
    manifest = tmp_path / "split.parquet"
    table.write_parquet(manifest)
    return root, manifest, table


def outputs(tmp_path):
    out = tmp_path / "faces"
    return out / "train.npy", out / "train.parquet", out / "train.json"


def run(split, tmp_path, policies=None, **kwargs):
    root, manifest, _ = split
    faces, manifest_out, report_out = outputs(tmp_path)
    report = write_face_cache(manifest, root, MARGIN, SIZE, 2, policies or {}, faces, manifest_out, report_out, **kwargs)
    return report, faces, manifest_out, report_out


def test_streamed_cache_is_byte_identical_to_np_save_of_the_in_memory_cache(split, tmp_path):
    root, _, table = split
    report, faces, manifest_out, report_out = run(split, tmp_path, chunk_images=5)  # 36 = 7 chunks of 5 + 1
    expected = tmp_path / "expected.npy"
    np.save(expected, build_face_cache(table, root, MARGIN, SIZE, threads=2), allow_pickle=False)
    assert faces.read_bytes() == expected.read_bytes()
    assert np.load(faces, mmap_mode="r", allow_pickle=False).shape == (36, SIZE, SIZE, 3)
    assert pl.read_parquet(manifest_out).equals(table)
    assert json.loads(report_out.read_text()) == report
    assert report["listed"] == report["cached"] == 36 and report["skipped"] == {}
    assert report["bytes"] == faces.stat().st_size == 128 + 36 * SIZE * SIZE * 3
    assert report["chunk_images"] == 5 and report["jpeg_reduction"]["1"] == 36


def test_reductions_are_counted(tmp_path):
    root = tmp_path / "celeba"
    (root / "Data").mkdir(parents=True)
    smooth_photo(1200, 900).save(root / "Data/large.jpg", quality=90)  # 1.08 MP
    smooth_photo(900, 800).save(root / "Data/small.jpg", quality=90)  # 0.72 MP: decoded exactly
    manifest = tmp_path / "m.parquet"
    pl.DataFrame({"path": ["Data/large.jpg", "Data/small.jpg"] * 3, "box_x": [100.0] * 6, "box_y": [100.0] * 6,
                  "box_w": [500.0] * 6, "box_h": [500.0] * 6}).write_parquet(manifest)
    out = tmp_path / "out"
    report = write_face_cache(manifest, root, MARGIN, 64, 2, {}, out / "f.npy", out / "f.parquet", out / "f.json")
    assert report["jpeg_reduction"] == {"1": 3, "2": 0, "4": 0, "8": 3}  # 700 px crops: 1/8 keeps 87 >= 64


def test_npy_header_is_np_save_s(tmp_path):
    for shape in [(1, 2, 2, 3), (36, 16, 16, 3), (1000, 8, 8, 3)]:
        path = tmp_path / "saved.npy"
        np.save(path, np.zeros(shape, np.uint8), allow_pickle=False)
        header = npy_header(shape)
        assert path.read_bytes()[: len(header)] == header and path.stat().st_size == len(header) + np.prod(shape)


def test_a_padded_header_still_loads(tmp_path):
    shape = (3, 2, 2, 3)
    data = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    path = tmp_path / "padded.npy"
    path.write_bytes(_header_of_length(shape, 192) + data.tobytes())
    np.testing.assert_array_equal(np.load(path, mmap_mode="r", allow_pickle=False), data)


def test_each_chunk_is_on_disk_before_the_next_is_decoded(split, tmp_path, monkeypatch):
    """Memory does not grow with N: image i is decoded while the file holds exactly the chunks before it."""
    folder = outputs(tmp_path)[0].parent
    seen = []
    original = faces_module.decode_face

    def spy(path, *args, **kwargs):
        (tmp,) = [p for p in folder.iterdir() if p.name.startswith(".train.npy.")]
        seen.append(tmp.stat().st_size)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(faces_module, "decode_face", spy)
    root, manifest, _ = split
    faces, manifest_out, report_out = outputs(tmp_path)
    write_face_cache(manifest, root, MARGIN, SIZE, 1, {}, faces, manifest_out, report_out, chunk_images=8)
    row = SIZE * SIZE * 3
    assert seen == [128 + (i // 8) * 8 * row for i in range(36)]


def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """Python/numpy peak allocation of the step (tracemalloc) for 40 vs 160 images, 8 per chunk."""
    root = tmp_path / "celeba"
    write_image(root / "Data/train/1/live/a.png", 60, 60)
    peaks = {}
    for n in (40, 160):
        manifest = tmp_path / f"m{n}.parquet"
        pl.DataFrame({"path": ["Data/train/1/live/a.png"] * n, **{c: [None] * n for c in ("box_x", "box_y", "box_w", "box_h")}},
                     schema_overrides={c: pl.Float64 for c in ("box_x", "box_y", "box_w", "box_h")}).write_parquet(manifest)
        out = tmp_path / f"out{n}"
        tracemalloc.start()
        write_face_cache(manifest, root, MARGIN, 32, 1, {}, out / "f.npy", out / "f.parquet", out / "f.json", chunk_images=8)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert np.load(out / "f.npy").shape == (n, 32, 32, 3)
    in_memory_growth = 120 * 32 * 32 * 3  # what one array of all faces would add
    assert peaks[160] - peaks[40] < in_memory_growth / 4, peaks


def broken_files(root, table):
    """Truncate one image, corrupt another, make two decompression bombs (under a small pixel limit):
    one over the limit (PIL warns) and one over twice the limit (PIL raises on open)."""
    paths = table["path"].to_list()
    truncated, corrupt, bomb, big_bomb = paths[1], paths[7], paths[20], paths[28]
    data = (root / truncated).read_bytes()
    (root / truncated).write_bytes(data[: len(data) // 2])
    data = bytearray((root / corrupt).read_bytes())
    data[len(data) // 2 :] = b"\x00" * (len(data) - len(data) // 2)
    (root / corrupt).write_bytes(bytes(data))
    write_image(root / bomb, 120, 100)  # 12,000 pixels; others have 8,000
    write_image(root / big_bomb, 250, 100)  # 25,000 pixels
    return truncated, corrupt, bomb, big_bomb


@pytest.fixture
def small_pixel_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)


def test_broken_images_are_skipped_and_counted_and_the_cache_stays_aligned(split, tmp_path, small_pixel_limit):
    root, _, table = split
    truncated, corrupt, bomb, big_bomb = broken_files(root, table)
    report, faces, manifest_out, _ = run(split, tmp_path, SKIP, chunk_images=7)
    cached = pl.read_parquet(manifest_out)
    assert cached.columns == table.columns
    left_out = set(table["path"]) - set(cached["path"])
    assert {truncated, bomb, big_bomb} <= left_out
    assert report["skipped"]["unreadable_image"] == len(left_out) and report["cached"] == 36 - len(left_out)
    assert set(report["examples"]["unreadable_image"]) == left_out
    array = np.load(faces, mmap_mode="r", allow_pickle=False)
    assert array.shape == (cached.height, SIZE, SIZE, 3)
    np.testing.assert_array_equal(array, build_face_cache(cached, root, MARGIN, SIZE))
    assert cached["path"].to_list() == [p for p in table["path"] if p not in left_out]  # order kept


@pytest.mark.parametrize("victim", ["truncated", "bomb", "big_bomb"])
def test_fail_policy_names_the_file_and_writes_nothing(split, tmp_path, small_pixel_limit, victim):
    root, _, table = split
    broken = dict(zip(("truncated", "corrupt", "bomb", "big_bomb"), broken_files(root, table)))
    for name in set(broken) - {victim}:  # only one problem here
        write_image(root / broken[name], 100, 80)
    with pytest.raises(DataError, match=broken[victim].replace("/", ".")) as error:
        run(split, tmp_path, {"on_unreadable_image": "fail"})
    assert "unreadable_image" in str(error.value)
    assert not outputs(tmp_path)[0].parent.exists() or not any(outputs(tmp_path)[0].parent.iterdir())


def test_escaping_symlink_is_never_opened(split, tmp_path, monkeypatch):
    root, _, table = split
    outside = tmp_path / "outside.jpg"
    write_image(outside, 100, 80)
    victim = root / table["path"][3]
    victim.unlink()
    victim.symlink_to(outside)
    opened = []
    original_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(os.path.realpath(fp)) or original_open(fp, *a, **k))
    with pytest.raises(DataError, match="unsafe_path"):
        run(split, tmp_path, {})
    assert str(outside) not in opened
    opened.clear()
    report, _, manifest_out, _ = run(split, tmp_path, SKIP)
    assert report["skipped"] == {"unsafe_path": 1} and report["examples"]["unsafe_path"] == [table["path"][3]]
    assert table["path"][3] not in pl.read_parquet(manifest_out)["path"].to_list()
    assert str(outside) not in opened and len(opened) == 35


def test_image_deleted_after_ingest_is_a_missing_image(split, tmp_path):
    root, _, table = split
    (root / table["path"][0]).unlink()
    report, *_ = run(split, tmp_path, SKIP)
    assert report["skipped"] == {"missing_image": 1} and report["cached"] == 35
    with pytest.raises(DataError, match="missing_image"):
        run(split, tmp_path, {"on_missing_image": "fail"})


def test_no_usable_image_is_a_clear_error_and_writes_nothing(split, tmp_path):
    root, _, table = split
    for path in table["path"]:
        (root / path).write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"no usable images.*all 36.*unreadable_image"):
        run(split, tmp_path, SKIP)
    assert not any(outputs(tmp_path)[0].parent.iterdir())


def test_draft_scale_keeps_at_least_the_cache_size():
    assert draft_scale((0, 0, 512, 600), 64) == 8
    assert draft_scale((0, 0, 511, 600), 64) == 4
    assert draft_scale((10, 10, 138, 1000), 64) == 2
    assert draft_scale((0, 0, 127, 1000), 64) == 1


def smooth_photo(width, height, seed=0):
    """A photo-like image: smooth shading, soft shapes, a little sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([128 + 60 * np.sin(xx / 37.0 + c) * np.cos(yy / 53.0 - c) for c in range(3)], -1)
    for _ in range(40):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(5, 60)
        inside = np.clip(r - np.hypot(xx - cx, yy - cy), 0, 1)[..., None]
        image = image * (1 - inside) + inside * rng.uniform(0, 255, 3)
    image += rng.normal(0, 2, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def test_reduced_decoding_of_a_large_jpeg_is_nearly_the_full_decode(tmp_path):
    path = tmp_path / "large.jpg"
    smooth_photo(1600, 1200).save(path, quality=92)
    box = (500.0, 300.0, 420.0, 480.0)  # with margin 0.2 the crop is 672 px: 1/8 keeps 84 >= 64
    full, full_scale = decode_face(path, box, 0.2, 64, reduce=False)
    reduced, scale = decode_face(path, box, 0.2, 64)
    assert (full_scale, scale) == (1, 8)
    diff = np.abs(full.astype(int) - reduced.astype(int))
    # Both are low-pass filtered versions of the same pixels (libjpeg's DCT-domain 1/8 scaling then
    # bilinear, vs PIL's bilinear over the whole factor), so they differ by the two kernels' shapes,
    # which shows only at sharp edges: under one grey level on average, PSNR >= 40 dB (measured:
    # 0.49, 48 dB, 99% of values within 5 levels). Not bit for bit, hence a tolerance.
    psnr = 10 * np.log10(255**2 / (diff**2).mean())
    assert diff.mean() < 1.0 and psnr >= 40 and np.percentile(diff, 99) <= 8, (diff.mean(), psnr)
    with Image.open(path) as image:
        np.testing.assert_array_equal(full, crop_face(image, box, 0.2, 64))


def test_small_jpeg_and_png_are_decoded_exactly_as_before(tmp_path):
    photo = smooth_photo(300, 240)
    photo.save(tmp_path / "small.jpg", quality=92)
    photo.save(tmp_path / "large.png")
    smooth_photo(1100, 800).save(tmp_path / "under_a_megapixel.jpg", quality=92)
    box = (100.0, 60.0, 60.0, 70.0)  # crop 98 px < 2 x 64: no reduction for the JPEG
    with Image.open(tmp_path / "under_a_megapixel.jpg") as image:
        expected = crop_face(image, (100.0, 60.0, 600.0, 600.0), 0.2, 64)
    face, scale = decode_face(tmp_path / "under_a_megapixel.jpg", (100.0, 60.0, 600.0, 600.0), 0.2, 64)
    assert scale == 1 and face.tobytes() == expected.tobytes()  # 0.88 MP: the 1/8 the crop allows is not used
    for name in ("small.jpg", "large.png"):
        with Image.open(tmp_path / name) as image:
            expected = crop_face(image, box, 0.2, 64)
        face, scale = decode_face(tmp_path / name, box, 0.2, 64)
        assert scale == 1 and face.tobytes() == expected.tobytes(), name
    face, scale = decode_face(tmp_path / "large.png", None, 0.0, 32)  # 300 px >= 8 x 32, but PNG
    assert scale == 1

"""External test sets: folder and table layouts ingested with every quirk counted, the face cache on them,
thresholds fixed on CelebA-Spoof validation, and the domain-shifted synthetic set."""

import hashlib
import math
import os

import numpy as np
import polars as pl
import pytest
from PIL import Image

from fasflow.config import check_external_tests, scored_models
from fasflow.errors import ConfigError, DataError
from fasflow.external import (
    FIRST_EXTRA_CODE,
    MARKER,
    attack_codes,
    cross_dataset_rows,
    ingest_external,
    write_cross_dataset,
    write_shifted_set,
)
from fasflow.faces import write_face_cache
from fasflow.ingest import DEFAULT_POLICIES
from fasflow.metrics import eer

POLICIES = {**DEFAULT_POLICIES, "on_unsafe_path": "skip"}


def spec(root, **over):
    """An external_tests entry with the schema's defaults."""
    base = {
        "format": "folder", "root": str(root), "table": None, "subject_level": False, "type_level": False,
        "boxes": "file", "box_units": "pixels", "synthetic": {"enabled": False},
    }
    return {**base, **over}


def image(path, size=(40, 30), colour=(90, 90, 90), face=None, face_colour=(250, 20, 20)):
    """A plain image; `face` (x, y, w, h in pixels) painted in `face_colour`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0], 3), np.uint8) + np.array(colour, np.uint8)
    if face:
        x, y, w, h = face
        pixels[y : y + h, x : x + w] = face_colour
    Image.fromarray(pixels).save(path)
    return path


def box_file(image_path, text):
    image_path.with_name(image_path.stem + "_BB.txt").write_text(text)


def quirky_folder(tmp_path):
    """live/<subject>/ and spoof/<type>/<subject>/ with one image per quirk."""
    root = tmp_path / "set"
    outside = tmp_path / "outside"
    good = image(root / "live/s1/a.png", face=(10, 5, 12, 12))
    box_file(good, "10 5 12 12 0.99")
    box_file(image(root / "live/s1/b.png"), "500 500 10 10")  # entirely outside the image: bad box
    box_file(image(root / "spoof/print/s1/c.png"), "not a box")  # malformed box
    image(root / "spoof/replay/s2/d.png")  # no box file: missing box
    box_file(image(root / "spoof/photo/s2/e.jpg", face=(0, 0, 20, 20)), "0 0 20 20")
    image(root / "spoof/photo/f.png")  # no subject level: not the layout
    (root / "live/s2").mkdir(parents=True)
    (root / "live/s2/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # unreadable
    (root / "notes.txt").write_text("not an image")
    image(outside / "s3/x.png")
    os.symlink(outside / "s3", root / "live/s3")  # a subject folder leaving the root
    os.symlink(image(outside / "y.png"), root / "spoof/photo/s2/link.png")  # an image leaving the root
    return root


def test_folder_set_counts_every_quirk_and_caches_faces(tmp_path):
    root = quirky_folder(tmp_path)
    table, report = ingest_external("quirky", spec(root, subject_level=True, type_level=True), POLICIES)
    assert report["skipped_or_flagged"] == {
        "bb_bad": 1, "bb_malformed": 1, "bb_missing": 1, "malformed_label": 1, "unreadable_image": 1, "unsafe_path": 2,
    }
    assert report["examples"]["unsafe_path"] == ["live/s3/", "spoof/photo/s2/link.png"]
    assert report["examples"]["malformed_label"] == ["spoof/photo/f.png"]
    assert report["layout"]["not_images"] == 1 and report["layout"]["box_files"] == 4
    # Boxes are kept whole under the default keep policy, and say so.
    assert table["path"].to_list() == ["live/s1/a.png", "live/s1/b.png", "spoof/photo/s2/e.jpg", "spoof/print/s1/c.png", "spoof/replay/s2/d.png"]
    assert table["box_status"].to_list() == ["ok", "bad", "ok", "malformed", "missing"]
    assert report["listed"] == 9 and report["usable"] == 5  # 8 images found + 1 folder leaving the root
    assert report["subjects_known"] and table["subject_id"].to_list() == ["s1", "s1", "s2", "s1", "s2"]
    # photo keeps CelebA-Spoof's code; the set's own attack names get codes after it, in sorted order.
    assert table["spoof_type"].to_list() == [0, 0, 1, FIRST_EXTRA_CODE, FIRST_EXTRA_CODE + 1]
    assert report["attack_types"]["replay"] == {"code": FIRST_EXTRA_CODE + 1, "images": 1}

    # The face cache crops the pixel box: the painted face fills the crop (margin 0).
    faces, manifest, cache_report = tmp_path / "f.npy", tmp_path / "f.parquet", tmp_path / "f.json"
    images = tmp_path / "images.parquet"
    table.write_parquet(images)
    result = write_face_cache(images, root, 0.0, 8, 1, POLICIES, faces, manifest, cache_report)
    crops = np.load(faces)
    assert result["cached"] == 5 and result["whole_image"] == 3
    assert crops[0, 2:6, 2:6, 0].min() > 200 and crops[0, 2:6, 2:6, 1].max() < 60

    # Skip instead of keep: the bad boxes go, counted the same way.
    skipping = {**POLICIES, "on_bad_box": "skip", "on_malformed_box": "skip", "on_missing_box": "skip"}
    table, report = ingest_external("quirky", spec(root, subject_level=True, type_level=True), skipping)
    assert table["path"].to_list() == ["live/s1/a.png", "spoof/photo/s2/e.jpg"]
    assert report["skipped_or_flagged"]["bb_missing"] == 1
    # The configured default refuses unsafe paths, naming them.
    with pytest.raises(DataError, match="unsafe_path.*live/s3/"):
        ingest_external("quirky", spec(root, subject_level=True, type_level=True), DEFAULT_POLICIES)


def test_folder_set_without_levels_is_image_level(tmp_path):
    root = tmp_path / "flat"
    image(root / "live/a.png")
    image(root / "spoof/b.png")
    image(root / "spoof/deep/c.png")  # a level the layout does not have
    table, report = ingest_external("flat", spec(root, boxes="none"), POLICIES)
    assert table["path"].to_list() == ["live/a.png", "spoof/b.png"]
    assert report["skipped_or_flagged"] == {"malformed_label": 1}
    # Subjects unknown: each image is its own bootstrap cluster.
    assert not report["subjects_known"] and table["subject_id"].to_list() == table["path"].to_list()
    assert table["attack"].to_list() == ["live", "spoof"] and table["box_status"].to_list() == ["none", "none"]


def test_table_set_counts_every_quirk(tmp_path):
    root = tmp_path / "frames"
    image(root / "a.png", size=(50, 50))
    image(root / "b.png", size=(50, 50))
    image(root / "c.png", size=(50, 50))
    image(root / "d.png", size=(50, 50))
    image(tmp_path / "secret.png")
    rows = [
        {"path": "a.png", "label": "live", "spoof_type": None, "box_x": 5, "box_y": 5, "box_w": 20, "box_h": 20},
        {"path": "b.png", "label": 1, "spoof_type": "9", "box_x": 0, "box_y": 0, "box_w": -5, "box_h": 10},  # bad box
        {"path": "c.png", "label": "spoof", "spoof_type": "print", "box_x": None, "box_y": None, "box_w": None, "box_h": None},
        {"path": "d.png", "label": "maybe", "spoof_type": None, "box_x": 1, "box_y": 1, "box_w": 9, "box_h": 9},  # bad label
        {"path": "a.png", "label": 0, "spoof_type": None, "box_x": 1, "box_y": 1, "box_w": 9, "box_h": 9},  # listed twice
        {"path": "gone.png", "label": 1, "spoof_type": None, "box_x": 1, "box_y": 1, "box_w": 9, "box_h": 9},  # missing
        {"path": "../secret.png", "label": 1, "spoof_type": None, "box_x": 1, "box_y": 1, "box_w": 9, "box_h": 9},  # unsafe
        {"path": "/etc/hostname", "label": 1, "spoof_type": None, "box_x": 1, "box_y": 1, "box_w": 9, "box_h": 9},  # unsafe
        {"path": "d.png", "label": 0, "spoof_type": "photo", "box_x": 1, "box_y": 1, "box_w": 9, "box_h": 9},  # live said photo
    ]
    table_path = tmp_path / "list.csv"
    pl.DataFrame(rows, infer_schema_length=None).with_columns(pl.col("label").cast(pl.String)).write_csv(table_path)
    entry = spec(root, format="table", table=str(table_path), boxes="columns")
    table, report = ingest_external("listed", entry, POLICIES)
    assert report["skipped_or_flagged"] == {
        "bb_bad": 1, "bb_missing": 1, "duplicate_path": 1, "malformed_label": 2, "missing_image": 1, "unsafe_path": 2,
    }
    assert table["path"].to_list() == ["a.png", "b.png", "c.png"]
    assert table["spoof_type"].to_list() == [0, 9, FIRST_EXTRA_CODE]  # 9 = phone, a CelebA-Spoof code
    assert table["attack"].to_list() == ["live", "phone", "print"]
    assert table.row(0, named=True)["box_w"] == pytest.approx(20.0) and table["box_status"].to_list() == ["ok", "bad", "missing"]
    assert report["listed"] == 9 and not report["subjects_known"]

    # CelebA-Spoof's box convention: the 224 frame of the resized image (50 px wide: x 5 -> 5 * 50 / 224).
    table, _ = ingest_external("listed", {**entry, "box_units": "frame224"}, POLICIES)
    assert table.row(0, named=True)["box_x"] == pytest.approx(5 * 50 / 224)

    # A parquet table with subjects: subject-level.
    parquet = tmp_path / "list.parquet"
    pl.DataFrame({"path": ["a.png", "c.png"], "label": [0, 1], "subject_id": ["p1", "p2"]}).write_parquet(parquet)
    table, report = ingest_external("listed", spec(root, format="table", table=str(parquet), boxes="none"), POLICIES)
    assert report["subjects_known"] and table["subject_id"].to_list() == ["p1", "p2"]
    with pytest.raises(DataError, match="missing column"):
        pl.DataFrame({"file": ["a.png"]}).write_csv(tmp_path / "bad.csv")
        ingest_external("bad", spec(root, format="table", table=str(tmp_path / "bad.csv")), POLICIES)


def test_detector_without_a_face_follows_its_policy(tmp_path):
    root = tmp_path / "det"
    image(root / "live/blank.png", size=(64, 64))
    image(root / "spoof/blank.png", size=(64, 64), colour=(200, 200, 200))
    table, report = ingest_external("det", spec(root, boxes="detector"), POLICIES)
    assert report["skipped_or_flagged"] == {"no_face": 2} and table["box_status"].to_list() == ["no_face", "no_face"]
    assert table["box_x"].null_count() == 2  # the whole image is used, and counted
    with pytest.raises(DataError, match="no usable image"):
        ingest_external("det", spec(root, boxes="detector"), {**POLICIES, "on_no_face": "skip"})
    with pytest.raises(DataError, match="no_face.*on_no_face: fail"):
        ingest_external("det", spec(root, boxes="detector"), {**POLICIES, "on_no_face": "fail"})


def test_config_checks_and_attack_codes():
    with pytest.raises(ConfigError, match="external_tests.x.table"):
        check_external_tests({"x": spec("r", format="table")})
    with pytest.raises(ConfigError, match="columns"):
        check_external_tests({"x": spec("r", boxes="columns")})
    with pytest.raises(ConfigError, match="generated set.*'boxes': 'file'"):
        check_external_tests({"x": spec("r", subject_level=True, type_level=True, boxes="detector", synthetic={"enabled": True})})
    trained = ["teacher", "S0", "zoo_a"]
    assert scored_models({"cross_dataset": {"models": None}}, trained) == trained
    assert scored_models({"cross_dataset": {"models": ["zoo_a", "S0"]}}, trained) == ["zoo_a", "S0"]
    with pytest.raises(ConfigError, match=r"cross_dataset.models: \['S9'\] not trained models"):
        scored_models({"cross_dataset": {"models": ["S9"]}}, trained)
    assert attack_codes(["live", "replay", "photo", "print"]) == {"live": 0, "photo": 1, "print": FIRST_EXTRA_CODE, "replay": FIRST_EXTRA_CODE + 1}


def predictions(live_scores, spoof_scores, subjects=None, prefix="x"):
    n_live = len(live_scores)
    scores = list(live_scores) + list(spoof_scores)
    return pl.DataFrame(
        {
            "path": [f"{prefix}{i}" for i in range(len(scores))],
            "subject_id": subjects or [f"{prefix}{i}" for i in range(len(scores))],
            "label": [0] * n_live + [1] * len(spoof_scores),
            "spoof_type": [0] * n_live + [1] * len(spoof_scores),
            "score": scores,
        }
    )


def test_threshold_is_fixed_on_celeba_validation_not_on_the_external_set():
    rng = np.random.default_rng(0)
    # Validation: live around 0.2, spoof around 0.4 -> EER threshold near 0.3.
    val = predictions(rng.uniform(0.1, 0.29, 60), rng.uniform(0.31, 0.5, 60))
    test = predictions(rng.uniform(0.1, 0.29, 40), rng.uniform(0.31, 0.5, 40))
    # The external set is shifted upwards: live 0.6-0.7, spoof 0.8-0.9 (perfectly separable at its own EER threshold).
    external = predictions(rng.uniform(0.6, 0.7, 30), rng.uniform(0.8, 0.9, 30), subjects=[f"p{i % 10}" for i in range(60)])
    rows = cross_dataset_rows(external, val, test, True, {1: "photo"}, n_resamples=200, seed=0, level=0.95)
    by_rule = {r["threshold_rule"]: r for r in rows}
    val_threshold = eer(val["label"].to_numpy(), val["score"].to_numpy())[1]
    assert by_rule["val_eer"]["threshold"] == val_threshold and 0.29 < val_threshold < 0.6  # below every external score
    # At the validation threshold every external live image is rejected: BPCER 1, ACER 0.5.
    assert by_rule["val_eer"]["bpcer"] == 1.0 and by_rule["val_eer"]["apcer"] == 0.0 and by_rule["val_eer"]["acer"] == 0.5
    # The oracle threshold sits between the external classes and looks perfect.
    assert 0.7 < by_rule["oracle_eer"]["threshold"] <= 0.9 and by_rule["oracle_eer"]["acer"] == 0.0
    assert by_rule["paper"]["threshold"] == 0.5 and by_rule["paper"]["bpcer"] == 1.0
    # The same threshold on the CelebA-Spoof test split: the in-domain comparison.
    t_scores, t_labels = test["score"].to_numpy(), test["label"].to_numpy()
    in_domain = (np.mean(t_scores[t_labels == 1] < val_threshold) + np.mean(t_scores[t_labels == 0] >= val_threshold)) / 2
    assert by_rule["val_eer"]["celeba_test_acer"] == pytest.approx(in_domain) and in_domain < 0.05
    assert by_rule["val_eer"]["ci_unit"] == "subject" and by_rule["val_eer"]["ci_clusters"] == 10
    assert by_rule["val_eer"]["roc_auc"] == 1.0 and by_rule["val_eer"]["worst_attack"] == "photo"
    image_level = cross_dataset_rows(external, val, test, False, {}, n_resamples=0, seed=0, level=0.95)
    assert image_level[0]["ci_unit"] == "image" and math.isnan(image_level[0]["acer_ci_lo"])


def test_cross_dataset_table_files(tmp_path):
    import json

    rng = np.random.default_rng(1)
    files = {}
    for name, frame in (
        ("val", predictions(rng.uniform(0, 0.4, 30), rng.uniform(0.3, 1, 30))),
        ("test", predictions(rng.uniform(0, 0.4, 30), rng.uniform(0.3, 1, 30))),
        ("ext", predictions(rng.uniform(0.2, 0.8, 30), rng.uniform(0.4, 1, 30))),
    ):
        files[name] = tmp_path / f"{name}.parquet"
        frame.write_parquet(files[name])
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"subjects_known": False, "attack_types": {"live": {"code": 0}, "photo": {"code": 1}},
                                  "usable": 60, "listed": 61, "skipped_or_flagged": {"missing_image": 1}}))
    csv, md = tmp_path / "t.csv", tmp_path / "t.md"
    numbers = write_cross_dataset({"shift": {"S0": files["ext"]}}, {"S0": files["val"]}, {"S0": files["test"]}, {"shift": report},
                                  100, 0, 0.95, csv, md, [tmp_path / "roc.png"])
    assert numbers.height == 3 and set(numbers["threshold_rule"]) == {"val_eer", "paper", "oracle_eer"}
    text = md.read_text()
    assert "| shift | S0 | 30 / 30 | 60 images |" in text and "shift: image level" in text and "60 of 61 images usable, flagged missing_image 1" in text
    assert (tmp_path / "roc.png").stat().st_size > 0


def digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shifted_set_is_deterministic_ingestable_and_in_another_style(tmp_path):
    from fasflow import synth

    counts = write_shifted_set(tmp_path / "a", 4, 6, seed=5)
    write_shifted_set(tmp_path / "b", 4, 6, seed=5)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert counts == {"live": 8, "spoof": 16}
    # Rewriting an earlier set is allowed; a folder of someone else's files is not touched.
    write_shifted_set(tmp_path / "a", 4, 6, seed=6)
    assert digest(tmp_path / "a") != digest(tmp_path / "b")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/photo.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match=MARKER):
        write_shifted_set(tmp_path / "mine", 4, 6, seed=5)

    table, report = ingest_external("shift", spec(tmp_path / "b", subject_level=True, type_level=True), DEFAULT_POLICIES)
    assert report["usable"] == 24 and report["skipped_or_flagged"] == {} and set(table["box_status"]) == {"ok"}
    assert report["subjects"] == 4

    # Another style than the training data: larger images, warmer (red over blue) and JPEG everywhere.
    synth.generate(tmp_path / "train", 4, 6, seed=5)
    def stats(paths):
        sizes, ratios = [], []
        for p in paths:
            with Image.open(p) as im:
                x = np.asarray(im.convert("RGB"), np.float64)
                sizes.append(max(im.size))
                ratios.append(x[..., 0].mean() / max(x[..., 2].mean(), 1.0))
        return np.mean(sizes), np.mean(ratios)
    train_size, train_warmth = stats(sorted((tmp_path / "train/Data").rglob("*.[jp][pn]g")))
    shift_size, shift_warmth = stats(sorted((tmp_path / "b").rglob("*.jpg")))
    assert shift_size > 1.3 * train_size and shift_warmth > 1.2 * train_warmth

"""Ingest on hand-made CelebA-Spoof trees: conversions, counts, policies and bad input."""

import json
import os
from pathlib import Path

import polars as pl
import pytest
from celeba_tree import LABEL_FILES, label_vector, make_tree, write_image
from PIL import Image

from fasflow.errors import DataError
from fasflow.ingest import box_in_pixels, ingest, is_safe_relative, parse_box
from fasflow.steps import run_ingest


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "celeba"
    labels = make_tree(root, subjects=6)
    return root, labels


def rewrite_labels(root, split, labels):
    (root / "metas" / "intra_test" / f"{split}_label.json").write_text(json.dumps(labels))


def first_path(labels, split="train", kind="spoof"):
    return next(p for p in labels[split] if f"/{kind}/" in p)


def test_box_converted_from_224_frame_to_pixels():
    # 100 x 80 image: x scales by 100/224, y by 80/224
    assert box_in_pixels((56, 56, 112, 112), 100, 80) == pytest.approx((25.0, 20.0, 50.0, 40.0))


def test_box_clipped_to_image_and_empty_boxes_rejected():
    assert box_in_pixels((-22.4, 0, 44.8, 224), 224, 224) == pytest.approx((0.0, 0.0, 22.4, 224.0))
    assert box_in_pixels((10, 10, 0, 50), 224, 224) is None
    assert box_in_pixels((300, 300, 20, 20), 224, 224) is None


def test_parse_box_rejects_empty_and_non_finite():
    assert parse_box("1 2 3 4 0.9") == (1.0, 2.0, 3.0, 4.0, 0.9)
    assert parse_box("") is None
    assert parse_box("1 2 nan 4 0.9") is None
    assert parse_box("a b c d") is None


def test_safe_paths():
    assert is_safe_relative("Data/train/1/live/1.jpg")
    for bad in ("/etc/passwd", "Data/../../etc/passwd", "../x.jpg", "Data/./x.jpg", "C:/x.jpg", "Data\\x.jpg"):
        assert not is_safe_relative(bad), bad


def test_clean_tree_gives_contract_columns(tree):
    root, labels = tree
    table, report = ingest(root, LABEL_FILES, {})
    n = sum(len(v) for v in labels.values())
    assert table.height == n == report["listed"] == report["usable"] == report["present"]
    assert table.columns[:7] == ["path", "subject_id", "label", "spoof_type", "illumination", "environment", "official_split"]
    assert table.schema["subject_id"] == pl.String
    row = table.filter(pl.col("path").str.ends_with(".jpg")).row(0, named=True)
    assert (row["width"], row["height"]) == (100, 80)
    assert (row["box_x"], row["box_y"], row["box_w"], row["box_h"]) == pytest.approx((25, 20, 50, 40))
    assert set(table["official_split"]) == {"train", "test"}
    assert report["skipped_or_flagged"] == {}


def test_missing_image_counted_and_skipped(tree):
    root, labels = tree
    victim = first_path(labels)
    (root / victim).unlink()
    table, report = ingest(root, LABEL_FILES, {})
    assert victim not in table["path"].to_list()
    assert report["skipped_or_flagged"] == {"missing_image": 1}
    assert report["examples"]["missing_image"] == [victim]


def test_missing_image_fails_when_configured(tree):
    root, labels = tree
    (root / first_path(labels)).unlink()
    with pytest.raises(DataError, match="missing_image.*on_missing_image"):
        ingest(root, LABEL_FILES, {"on_missing_image": "fail"})


def test_corrupt_image_counted(tree):
    root, labels = tree
    victim = first_path(labels)
    (root / victim).write_bytes(b"not a jpeg at all")
    table, report = ingest(root, LABEL_FILES, {})
    assert report["skipped_or_flagged"] == {"unreadable_image": 1}
    assert victim not in table["path"].to_list()


@pytest.mark.parametrize(
    "content, reason",
    [(None, "bb_missing"), ("", "bb_malformed"), ("1 2 inf 4 0.9", "bb_malformed"), ("10 10 0 0 0.9", "bb_bad"), ("-500 -500 10 10 1", "bb_bad")],
)
def test_box_problems_keep_whole_image_by_default(tree, content, reason):
    root, labels = tree
    victim = first_path(labels)
    bb = root / victim.replace(".jpg", "_BB.txt")
    if content is None:
        bb.unlink()
    else:
        bb.write_text(content)
    table, report = ingest(root, LABEL_FILES, {})
    assert report["skipped_or_flagged"] == {reason: 1}
    row = table.filter(pl.col("path") == victim).row(0, named=True)
    assert row["box_x"] is None and row["box_status"] == reason.removeprefix("bb_")
    skipped, report = ingest(root, LABEL_FILES, {"on_missing_box": "skip", "on_malformed_box": "skip", "on_bad_box": "skip"})
    assert victim not in skipped["path"].to_list() and skipped.height == table.height - 1


def test_negative_box_clipped_not_dropped(tree):
    root, labels = tree
    victim = first_path(labels)
    (root / victim.replace(".jpg", "_BB.txt")).write_text("-22.4 0 112 112 0.9")
    table, report = ingest(root, LABEL_FILES, {})
    row = table.filter(pl.col("path") == victim).row(0, named=True)
    assert row["box_x"] == 0.0 and row["box_w"] == pytest.approx(40.0)
    assert report["skipped_or_flagged"] == {}


def test_wrong_length_and_contradictory_label_vectors(tree):
    root, labels = tree
    train = dict(labels["train"])
    a, b, c = list(train)[:3]
    train[a] = [0] * 43
    train[b] = label_vector(label=0, spoof_type=4)  # live with a spoof type
    train[c] = ["x"] * 44
    rewrite_labels(root, "train", train)
    table, report = ingest(root, LABEL_FILES, {})
    assert report["skipped_or_flagged"] == {"malformed_label": 3}
    assert not set(table["path"]) & {a, b, c}
    with pytest.raises(DataError, match="on_malformed_label"):
        ingest(root, LABEL_FILES, {"on_malformed_label": "fail"})


def test_duplicate_path_counted_once(tree):
    root, labels = tree
    dup = first_path(labels)
    test_labels = dict(labels["test"])
    test_labels[dup] = labels["train"][dup]
    rewrite_labels(root, "test", test_labels)
    table, report = ingest(root, LABEL_FILES, {})
    assert table["path"].to_list().count(dup) == 1
    assert report["skipped_or_flagged"] == {"duplicate_path": 1}


def test_path_traversal_rejected_and_never_opened(tree, tmp_path):
    root, labels = tree
    secret = tmp_path / "secret.jpg"
    write_image(secret, 10, 10)
    train = dict(labels["train"])
    train["Data/../../secret.jpg"] = label_vector(1, 2)
    train[str(secret)] = label_vector(1, 2)
    rewrite_labels(root, "train", train)
    with pytest.raises(DataError, match="unsafe_path"):
        ingest(root, LABEL_FILES, {})
    table, report = ingest(root, LABEL_FILES, {"on_unsafe_path": "skip"})
    assert report["skipped_or_flagged"] == {"unsafe_path": 2}
    assert not any("secret" in p for p in table["path"])


def test_malformed_json_names_the_file(tree):
    root, _ = tree
    (root / LABEL_FILES[0]).write_text("{not json")
    with pytest.raises(DataError, match="train_label.json.*not valid JSON"):
        ingest(root, LABEL_FILES, {})


def test_empty_label_file_is_an_error(tree):
    root, _ = tree
    (root / LABEL_FILES[1]).write_text("{}")
    with pytest.raises(DataError, match="test_label.json lists no images"):
        ingest(root, LABEL_FILES, {})


def test_missing_label_file(tmp_path):
    with pytest.raises(DataError, match="label file not found"):
        ingest(tmp_path, LABEL_FILES, {})


def test_failed_ingest_writes_nothing(tree, tmp_path):
    root, labels = tree
    (root / first_path(labels)).unlink()
    out = tmp_path / "out"
    with pytest.raises(DataError):
        run_ingest(
            [str(root / f) for f in LABEL_FILES], out / "images.parquet", out / "report.json",
            dataset={"root": str(root), "check_files": True}, policies={"on_missing_image": "fail"},
        )
    assert not out.exists() or not any(out.iterdir())


def test_unknown_policy_key_rejected(tree):
    root, _ = tree
    with pytest.raises(DataError, match="unknown ingest policy"):
        ingest(root, LABEL_FILES, {"on_typo": "skip"})


def test_protocol_split_comes_from_the_label_file_name(tree):
    root, labels = tree
    table, report = ingest(root, LABEL_FILES, {})
    assert table.columns[6:8] == ["official_split", "protocol_split"] and table.schema["protocol_split"] == pl.String
    by_side = dict(table.group_by("protocol_split").agg(pl.col("path")).iter_rows())
    assert set(by_side["train"]) == set(labels["train"]) and set(by_side["test"]) == set(labels["test"])
    assert report["protocol_split"]["train"]["images"] == len(labels["train"])
    assert report["protocol_split"]["test"] == {"images": 12, "subjects": 2, "live": 4, "spoof": 8}
    assert report["label_file_sides"] == dict(zip(LABEL_FILES, ["train", "test"]))


def test_protocol_split_is_independent_of_the_data_folder(tree):
    # A protocol's test file may list images stored under Data/train (and the reverse).
    root, labels = tree
    moved = sorted(labels["train"])[:3]
    train = {k: v for k, v in labels["train"].items() if k not in moved}
    test = {**labels["test"], **{k: labels["train"][k] for k in moved}}
    rewrite_labels(root, "train", train)
    rewrite_labels(root, "test", test)
    table, report = ingest(root, LABEL_FILES, {})
    rows = table.filter(pl.col("path").is_in(moved))
    assert rows["official_split"].to_list() == ["train"] * 3 and rows["protocol_split"].to_list() == ["test"] * 3
    assert report["protocol_split"]["test"]["images"] == len(labels["test"]) + 3


def test_a_label_file_named_neither_train_nor_test_is_an_error(tree):
    root, _ = tree
    (root / "metas/intra_test/all_label.json").write_text((root / LABEL_FILES[0]).read_text())
    with pytest.raises(DataError, match="all_label.json.*train_label.json or test_label.json"):
        ingest(root, [LABEL_FILES[1], "metas/intra_test/all_label.json"], {})


def test_huge_integers_in_a_vector_are_malformed_not_a_crash(tree):
    root, labels = tree
    train = dict(labels["train"])
    a, b = list(train)[:2]
    train[a] = train[a][:43] + [10**30]
    train[b] = train[b][:41] + [70_000] + train[b][42:]  # illumination beyond Int16
    rewrite_labels(root, "train", train)
    table, report = ingest(root, LABEL_FILES, {})
    assert report["skipped_or_flagged"] == {"malformed_label": 2} and not {a, b} & set(table["path"])


def escape(root, tmp_path, relative, kind):
    """Make one labelled image (or its subject folder, or its box file) a link to outside the root."""
    outside = tmp_path / "outside"
    write_image(outside / "secret.jpg", 100, 80)
    (outside / "secret_BB.txt").write_text("56 56 112 112 0.99\n")
    image = root / relative
    if kind == "image":
        image.unlink()
        image.symlink_to(outside / "secret.jpg")
    elif kind == "folder":
        folder = image.parent
        for f in folder.iterdir():
            (outside / f.name).write_bytes(f.read_bytes())
            f.unlink()
        folder.rmdir()
        folder.symlink_to(outside)
    else:
        bb = image.with_name(image.stem + "_BB.txt")
        bb.unlink()
        bb.symlink_to(outside / "secret_BB.txt")
    return outside


@pytest.mark.parametrize("kind", ["image", "folder", "box"])
def test_escaping_symlinks_are_unsafe_and_never_opened(tree, tmp_path, monkeypatch, kind):
    root, labels = tree
    victim = first_path(labels)
    outside = escape(root, tmp_path, victim, kind)
    opened = []
    original_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(str(fp)) or original_open(fp, *a, **k))
    with pytest.raises(DataError, match="unsafe_path.*on_unsafe_path"):
        ingest(root, LABEL_FILES, {})
    table, report = ingest(root, LABEL_FILES, {"on_unsafe_path": "skip"})
    victims = {p for p in labels["train"] if (root / p).parent == (root / victim).parent} if kind == "folder" else {victim}
    assert report["skipped_or_flagged"] == {"unsafe_path": len(victims)}
    assert not victims & set(table["path"]) and table.height == sum(map(len, labels.values())) - len(victims)
    assert not any(str(outside) in os.path.realpath(p) for p in opened)


def test_a_root_reached_through_a_symlink_is_fine(tree, tmp_path):
    root, labels = tree
    link = tmp_path / "link_to_root"
    link.symlink_to(root)
    table, report = ingest(link, LABEL_FILES, {})
    assert report["skipped_or_flagged"] == {} and table.height == sum(map(len, labels.values()))


def test_a_decompression_bomb_is_unreadable_at_ingest(tree, monkeypatch):
    root, labels = tree
    victim = first_path(labels)
    write_image(root / victim, 120, 100)  # 12,000 pixels; the others have 8,000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    table, report = ingest(root, LABEL_FILES, {})
    assert report["skipped_or_flagged"] == {"unreadable_image": 1} and victim not in table["path"].to_list()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)  # now twice over the limit: PIL raises on open
    with pytest.raises(DataError, match="unreadable_image"):
        ingest(root, LABEL_FILES, {"on_unreadable_image": "fail"})


def test_truncated_image_passes_ingest_for_the_face_cache_to_catch(tree):
    # Ingest reads headers only; a full decode (the face cache) finds the truncation.
    root, labels = tree
    victim = first_path(labels)
    data = (root / victim).read_bytes()
    (root / victim).write_bytes(data[: len(data) // 2])
    table, report = ingest(root, LABEL_FILES, {})
    assert victim in table["path"].to_list() and report["skipped_or_flagged"] == {}


def make_all_bad(root, labels, problem):
    if problem == "malformed":
        rewrite_labels(root, "test", {k: [0] * 43 for k in labels["test"]})
    elif problem == "missing":
        for k in labels["test"]:
            (root / k).unlink()
    elif problem == "unreadable":
        for k in labels["test"]:
            (root / k).write_bytes(b"junk")
    elif problem == "unsafe":
        rewrite_labels(root, "test", {f"../x{i}.png": v for i, v in enumerate(labels["test"].values())})
    elif problem == "duplicate":
        rewrite_labels(root, "test", {k: labels["train"][k] for k in list(labels["train"])[:3]})
    elif problem == "bad_box_skipped":
        for k in labels["test"]:
            (root / k).with_name(Path(k).stem + "_BB.txt").write_text("0 0 0 0 1")


@pytest.mark.parametrize("problem", ["malformed", "missing", "unreadable", "unsafe", "duplicate", "bad_box_skipped"])
def test_a_label_file_with_no_usable_image_is_a_clear_error(tree, problem):
    root, labels = tree
    make_all_bad(root, labels, problem)
    policies = {"on_unsafe_path": "skip", "on_bad_box": "skip"}
    with pytest.raises(DataError, match=r"no usable images .*test_label.json \(listed \d+; problems counted") as error:
        ingest(root, LABEL_FILES, policies, threads=2)
    reason = {"malformed": "malformed_label", "missing": "missing_image", "unreadable": "unreadable_image", "unsafe": "unsafe_path",
              "duplicate": "duplicate_path", "bad_box_skipped": "bb_bad"}[problem]
    assert f"'{reason}': {len(labels['test']) if problem != 'duplicate' else 3}" in str(error.value)


@pytest.mark.parametrize("check_files", [True, False])
def test_every_label_file_all_malformed_is_the_same_clear_error(tree, check_files):
    root, labels = tree
    for side in ("train", "test"):
        rewrite_labels(root, side, {k: "not a vector" for k in labels[side]})
    with pytest.raises(DataError, match="no usable images.*train_label.json, metas/intra_test/test_label.json.*malformed_label"):
        ingest(root, LABEL_FILES, {}, check_files=check_files)

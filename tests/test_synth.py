"""The synthetic CelebA-Spoof-format dataset: format, determinism, class balance, defects."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fasflow import SPOOF_TYPES
from fasflow.cli import main
from fasflow.errors import ConfigError, DataError
from fasflow.faces import box_to_pixels
from fasflow.synth import DEFECT_KINDS, MARKER, generate, inject_defects

SMALL = (24, 40)  # image sides in tests: tiny, to keep the shared CPUs free


def _labels(root: Path) -> dict[str, list[int]]:
    out = {}
    for part in ("train", "test"):
        out.update(json.loads((root / f"metas/intra_test/{part}_label.json").read_text()))
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _bb_path(image: Path) -> Path:
    return image.with_name(image.stem + "_BB.txt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "celeba_spoof"
    counts = generate(root, 12, 6, 3, size_range=SMALL)
    return root, counts


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = _tree(_gen(tmp_path / "a", seed=5))
    b = _tree(_gen(tmp_path / "b", seed=5))
    assert list(a) == list(b)
    assert all(a[k] == b[k] for k in a)
    c = _tree(_gen(tmp_path / "c", seed=6))
    assert a != c


def test_parallel_workers_write_the_same_files(tmp_path):
    serial = _tree(_gen(tmp_path / "serial", seed=5))
    parallel = _tree(_gen(tmp_path / "parallel", seed=5, workers=3))
    assert list(serial) == list(parallel)
    assert all(serial[k] == parallel[k] for k in serial)


def _gen(root: Path, seed: int, workers: int = 1) -> Path:
    generate(root, 4, 6, seed, size_range=SMALL, workers=workers)
    return root


def test_layout_and_label_vectors(dataset):
    root, counts = dataset
    labels = _labels(root)
    assert len(labels) == counts["images"] == 12 * 6
    pattern = re.compile(r"^Data/(train|test)/(\d+)/(live|spoof)/(\d{6})\.(jpg|png)$")
    split_of_subject: dict[str, str] = {}
    for key, vec in labels.items():
        m = pattern.match(key)
        assert m, key
        part, subject, kind, _, ext = m.groups()
        assert ext == ("jpg" if part == "train" else "png")
        assert split_of_subject.setdefault(subject, part) == part, f"subject {subject} in both parts"
        assert (root / key).is_file() and _bb_path(root / key).is_file()
        assert len(vec) == 44 and all(isinstance(v, int) for v in vec)
        assert set(vec[:40]) <= {0, 1}
        spoof_type, illum, env, label = vec[40:]
        assert label == int(kind == "spoof") == int(spoof_type > 0)
        assert spoof_type in SPOOF_TYPES
        if label:
            assert illum in (1, 2, 3, 4) and env in (1, 2)
        else:
            assert illum == 0 and env == 0
    # Each label file lists only its own part; nothing on disk is unlisted.
    for part in ("train", "test"):
        keys = json.loads((root / f"metas/intra_test/{part}_label.json").read_text())
        assert all(k.startswith(f"Data/{part}/") for k in keys)
    images = {str(p.relative_to(root)) for p in (root / "Data").rglob("*") if p.suffix in (".jpg", ".png")}
    assert images == set(labels)
    bbs = list((root / "Data").rglob("*_BB.txt"))
    assert len(bbs) == len(labels)
    assert counts["train_subjects"] + counts["test_subjects"] == 12
    assert counts["test_subjects"] >= 1 and counts["train_subjects"] > counts["test_subjects"]
    assert json.loads((root / MARKER).read_text())["counts"] == counts


def test_images_are_really_jpeg_and_png_of_varied_sizes(dataset):
    root, _ = dataset
    sizes = set()
    for key in _labels(root):
        with Image.open(root / key) as im:
            assert im.format == ("JPEG" if key.endswith(".jpg") else "PNG")
            assert im.mode == "RGB"
            assert SMALL[0] <= im.width <= SMALL[1] and SMALL[0] <= im.height <= SMALL[1]
            sizes.add(im.size)
    assert len(sizes) > 20


def test_boxes_map_inside_the_image(dataset):
    root, _ = dataset
    for key in _labels(root):
        fields = _bb_path(root / key).read_text().split()
        assert len(fields) == 5
        box224 = [float(v) for v in fields[:4]]
        assert 0.0 < float(fields[4]) <= 1.0
        with Image.open(root / key) as im:
            width, height = im.size
        x, y, w, h = box_to_pixels(box224, width, height)
        assert all(math.isfinite(v) for v in (x, y, w, h))
        assert w > 0 and h > 0
        assert x >= 0 and y >= 0 and x + w <= width + 1e-9 and y + h <= height + 1e-9
        # The face is a real part of the image, not the whole frame or a speck.
        assert 0.02 < (w * h) / (width * height) < 0.9


def test_both_classes_all_spoof_types_and_ratio(dataset):
    root, counts = dataset
    vecs = list(_labels(root).values())
    types = [v[40] for v in vecs]
    assert set(types) == set(range(11))
    live = sum(v[43] == 0 for v in vecs)
    assert live == counts["live"] == 12 * 2 and counts["spoof"] == 12 * 4
    assert sum(counts["spoof_types"].values()) == counts["spoof"]
    # Every subject has live and spoof images.
    per_subject: dict[str, set[int]] = {}
    for key, v in _labels(root).items():
        per_subject.setdefault(key.split("/")[2], set()).add(v[43])
    assert all(s == {0, 1} for s in per_subject.values())


def test_mean_brightness_alone_does_not_separate_live_from_spoof(tmp_path):
    root = tmp_path / "ds"
    generate(root, 30, 6, 0, size_range=(24, 40))
    means, labels = [], []
    for key, vec in sorted(_labels(root).items()):
        with Image.open(root / key) as im:
            means.append(float(np.asarray(im.convert("L"), np.float32).mean()))
        labels.append(vec[43])
    x, y = np.array(means), np.array(labels)
    best_acc = best_bal = 0.0
    for t in np.unique(x):
        for pred in (x >= t, x < t):
            best_acc = max(best_acc, float((pred == y).mean()))
            best_bal = max(best_bal, float((pred[y == 1].mean() + (~pred)[y == 0].mean()) / 2))
    # Always answering "spoof" already scores 2/3: the threshold must add little to that.
    assert best_acc < 0.75
    assert best_bal < 0.65


def test_subjects_look_different_and_spoofs_share_a_setting(dataset):
    root, _ = dataset
    from fasflow.synth import _make_subjects

    subjects = _make_subjects(12, 3, 0.15)
    looks = {(s.skin, s.aspect, s.hair, s.eye_dx) for s in subjects}
    assert len(looks) == 12
    assert all(s.live_setting != s.spoof_setting for s in subjects)
    # The subjects in the files are these subjects.
    on_disk = {key.split("/")[2] for key in _labels(root)}
    assert on_disk == {s.subject_id for s in subjects}


def test_regenerating_replaces_an_earlier_synthetic_dataset(tmp_path):
    root = tmp_path / "ds"
    generate(root, 3, 3, 1, size_range=SMALL)
    generate(root, 2, 3, 2, size_range=SMALL)
    assert len(_labels(root)) == 6
    assert len(list((root / "Data").rglob("*_BB.txt"))) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"], "temporary folder left behind"


def test_regenerating_works_after_the_marker_file_was_deleted(tmp_path):
    # Snakemake deletes declared outputs (e.g. SYNTHETIC.json) before rerunning a rule.
    root = tmp_path / "ds"
    generate(root, 2, 3, 1, size_range=SMALL)
    (root / MARKER).unlink()
    (root / "metas/intra_test/train_label.json").unlink()
    generate(root, 2, 3, 1, size_range=SMALL)
    assert (root / MARKER).is_file() and len(_labels(root)) == 6


def test_refuses_to_overwrite_a_folder_that_is_not_synthetic(tmp_path):
    root = tmp_path / "real"
    (root / "Data").mkdir(parents=True)
    keep = root / "Data" / "precious.jpg"
    keep.write_bytes(b"x")
    with pytest.raises(DataError, match="real"):
        generate(root, 2, 3, 1, size_range=SMALL)
    assert keep.read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real"]


def test_an_empty_folder_is_fine(tmp_path):
    root = tmp_path / "ds"
    (root / "metas" / "intra_test").mkdir(parents=True)  # as Snakemake makes output parents
    counts = generate(root, 2, 3, 1, size_range=SMALL)
    assert counts["images"] == 6


@pytest.mark.parametrize(
    "args",
    [
        dict(n_subjects=0), dict(images_per_subject=1), dict(seed=-1), dict(size_range=(8, 40)),
        dict(identity_shortcut=-0.1), dict(identity_shortcut=1.5), dict(workers=0),
    ],
)
def test_bad_arguments_are_config_errors(tmp_path, args):
    kwargs = dict(n_subjects=2, images_per_subject=3, seed=1, size_range=SMALL) | args
    with pytest.raises(ConfigError):
        generate(tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()


def test_defects_are_injected_and_reported(tmp_path):
    root = tmp_path / "ds"
    counts = generate(root, 6, 6, 4, size_range=SMALL, defects=True)
    report = counts["defects"]
    assert sorted(report) == sorted(DEFECT_KINDS)
    hit = [p for paths in report.values() for p in paths]
    assert len(hit) == len(set(hit)) == len(DEFECT_KINDS), "each defect on its own image"
    labels = json.loads((root / "metas/intra_test/train_label.json").read_text())
    assert all(p in labels for p in hit), "defects are on listed train images"

    def bb(kind: str) -> Path:
        return _bb_path(root / report[kind][0])

    assert not (root / report["missing_image"][0]).exists()
    assert _bb_path(root / report["missing_image"][0]).exists()
    assert not bb("missing_bb").exists() and (root / report["missing_bb"][0]).exists()
    assert bb("empty_bb").read_text() == ""
    assert len(bb("malformed_bb").read_text().split()) != 5
    assert not all(math.isfinite(float(v)) for v in bb("nonfinite_bb").read_text().split())
    assert any(float(v) < 0 for v in bb("negative_bb").read_text().split()[:4])
    assert [float(v) for v in bb("zero_size_bb").read_text().split()[2:4]] == [0.0, 0.0]
    assert float(bb("outside_bb").read_text().split()[0]) > 224
    assert len(labels[report["bad_label"][0]]) == 43
    # Untouched images keep their files.
    others = sorted(set(labels) - set(hit))
    assert all((root / k).exists() and _bb_path(root / k).read_text() for k in others)
    assert json.loads((root / MARKER).read_text())["defects"] == report


def test_inject_defects_chooses_kinds_and_is_deterministic(tmp_path):
    reports = []
    for name in ("a", "b"):
        generate(tmp_path / name, 4, 6, 4, size_range=SMALL)
        reports.append(inject_defects(tmp_path / name, 9, kinds=["missing_bb", "empty_bb"], per_kind=2))
    assert reports[0] == reports[1]
    assert sorted(reports[0]) == ["empty_bb", "missing_bb"] and all(len(v) == 2 for v in reports[0].values())
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    with pytest.raises(ConfigError, match="unknown defect"):
        inject_defects(tmp_path / "a", 1, kinds=["nope"])


def test_inject_defects_refuses_a_dataset_it_did_not_write(tmp_path):
    (tmp_path / "metas/intra_test").mkdir(parents=True)
    (tmp_path / "metas/intra_test/train_label.json").write_text("{}")
    with pytest.raises(DataError, match="not a synthetic dataset"):
        inject_defects(tmp_path, 1)


def test_cli_prints_counts(tmp_path, capsys):
    root = tmp_path / "ds"
    rc = main(["synth", str(root), "--subjects", "3", "--images-per-subject", "3", "--seed", "2", "--size", "24", "32"])
    assert rc == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["images"] == 9 and counts["live"] == 3 and counts["spoof"] == 6
    assert len(_labels(root)) == 9


def test_cli_bad_input_exits_nonzero(tmp_path, capsys):
    rc = main(["synth", str(tmp_path / "ds"), "--subjects", "0"])
    assert rc == 2
    assert "n_subjects" in capsys.readouterr().err


PROTOCOL2 = [f"protocol2/test_on_{q}_quality_device" for q in ("low", "middle", "high")]


def _protocol(root: Path, protocol: str) -> dict[str, dict[str, list[int]]]:
    return {side: json.loads((root / f"metas/{protocol}/{side}_label.json").read_text()) for side in ("train", "test")}


def test_protocol_folders_follow_the_official_selection_rules(dataset):
    root, counts = dataset
    intra = _protocol(root, "intra_test")
    assert set(counts["protocols"]) == {"intra_test", "protocol1", *PROTOCOL2}
    for protocol in counts["protocols"]:
        files = _protocol(root, protocol)
        assert counts["protocols"][protocol] == {side: len(v) for side, v in files.items()}
        for side, labels in files.items():
            # Vectors are copied from intra_test; each file lists its official part's images only.
            assert all(intra[side][k] == v for k, v in labels.items()), (protocol, side)
            live = {k for k, v in intra[side].items() if v[43] == 0}
            assert live <= set(labels), "every live image of the part is in each of its protocol files"
    p1 = _protocol(root, "protocol1")
    assert {v[40] for v in p1["train"].values()} == {0, 1, 2, 5, 6, 8, 9}
    assert {v[40] for v in p1["test"].values()} <= {0, 3, 4, 7} and len(p1["test"]) > len(intra["test"]) // 3
    assert not any(v[40] == 10 for side in p1.values() for v in side.values())
    # Protocol 2: the three test files split the official test part's spoofs; each official-train
    # spoof is missing from exactly one train file (the one that tests on its device quality).
    p2 = [_protocol(root, name) for name in PROTOCOL2]
    test_spoofs = [{k for k, v in p["test"].items() if v[43]} for p in p2]
    assert sum(map(len, test_spoofs)) == len(set().union(*test_spoofs)) == sum(v[43] for v in intra["test"].values())
    train_spoofs = {k for k, v in intra["train"].items() if v[43]}
    assert all(sum(k in p["train"] for p in p2) == 2 for k in train_spoofs)
    assert all(len(s) > 0 for s in test_spoofs), "each quality has test spoofs"


def test_protocol_files_ingest_with_their_sides(dataset):
    from fasflow.ingest import ingest, protocol_label_files

    root, counts = dataset
    table, report = ingest(root, protocol_label_files("protocol1"), {})
    assert {s: v["images"] for s, v in report["protocol_split"].items()} == counts["protocols"]["protocol1"]
    assert (table["protocol_split"] == table["official_split"]).all()
    with pytest.raises(ConfigError, match="unknown CelebA-Spoof protocol"):
        protocol_label_files("protocol3")


# ----------------------------------------------------------------------------- planted controls


def _pixels(root: Path) -> dict[str, np.ndarray]:
    out = {}
    for key in sorted(_labels(root)):
        with Image.open(root / key) as im:
            out[key] = np.asarray(im.convert("RGB"), np.float32)
    return out


def _repeats(root: Path) -> tuple[int, int]:
    """(images that nearly repeat another image of their subject and class, images)."""
    pixels, labels = _pixels(root), _labels(root)
    groups: dict[tuple[str, int], list[str]] = {}
    for key in pixels:
        groups.setdefault((key.split("/")[2], labels[key][43]), []).append(key)
    repeated = 0
    for keys in groups.values():
        for key in keys:
            a = pixels[key]
            # A repeat differs from its capture by sensor noise and a 3% exposure change only.
            if any(b.shape == a.shape and np.abs(a - b).mean() < 12 for other, b in ((k, pixels[k]) for k in keys) if other != key):
                repeated += 1
    return repeated, len(pixels)


def test_identity_shortcut_repeats_captures_within_subject_and_class(tmp_path):
    generate(tmp_path / "off", 10, 9, 4, size_range=SMALL)
    generate(tmp_path / "on", 10, 9, 4, size_range=SMALL, identity_shortcut=1.0)
    off, n = _repeats(tmp_path / "off")
    on, _ = _repeats(tmp_path / "on")
    assert off == 0
    assert on == n  # every image of a subject and class is one capture
    labels_on = _labels(tmp_path / "on")
    # A repeat carries its capture's spoof type: one type per subject's spoofs at full strength.
    per_subject: dict[str, set[int]] = {}
    for key, vec in labels_on.items():
        if vec[43] == 1:
            per_subject.setdefault(key.split("/")[2], set()).add(vec[40])
    assert all(len(types) == 1 for types in per_subject.values())
    meta = json.loads((tmp_path / "on" / MARKER).read_text())
    assert meta["params"]["identity_shortcut"] == 1.0 and meta["params"]["distinct_cue"] is True


def test_identity_shortcut_strength_sets_the_share_of_repeats(tmp_path):
    generate(tmp_path / "half", 16, 9, 4, size_range=SMALL, identity_shortcut=0.5)
    repeated, n = _repeats(tmp_path / "half")
    # 16 subjects x (2 + 5 non-first images) with probability 0.5, plus the first images they repeat.
    assert 0.25 * n < repeated < 0.8 * n


def test_identity_shortcut_off_lets_the_setting_say_who_not_whether(tmp_path):
    """k = 0: an independent capture takes either class's setting, half the time each."""
    import inspect

    from fasflow.synth import _make_subjects, _render

    subject = _make_subjects(1, 2, 0.0)[0]
    a, *_ = _render(subject, 0, np.random.default_rng(1), (40, 40), swap_setting=False)
    b, *_ = _render(subject, 0, np.random.default_rng(1), (40, 40), swap_setting=True)
    assert np.abs(a.astype(float) - b.astype(float)).mean() > 5  # the swapped setting shows
    assert inspect.signature(generate).parameters["identity_shortcut"].default == 0.0


def test_distinct_cue_off_changes_only_the_3d_masks(tmp_path):
    generate(tmp_path / "own", 12, 6, 3, size_range=SMALL)
    generate(tmp_path / "shared", 12, 6, 3, size_range=SMALL, distinct_cue=False)
    labels = _labels(tmp_path / "own")
    assert labels == _labels(tmp_path / "shared")
    own, shared = _pixels(tmp_path / "own"), _pixels(tmp_path / "shared")
    changed = {k for k in own if not np.array_equal(own[k], shared[k])}
    masks = {k for k, v in labels.items() if v[40] == 10}
    assert masks and changed == masks

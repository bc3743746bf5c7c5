"""`fasflow predict`: evaluation-identical preprocessing, face detection and per-image errors."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.cbook
import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from celeba_tree import LABEL_FILES, make_tree
from fasflow.cli import main
from fasflow.data import FaceDataset, eval_transform
from fasflow.models import load_trained
from fasflow.faces import build_face_cache
from fasflow.infer import Predictor, read_box_file, read_image
from fasflow.ingest import ingest
from conftest import model_paths
from onnx_models import FACE_SIZE, INPUT_SIZE, MARGIN, export_tiny, make_model_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    model, _ = load_trained(*model_paths(make_model_dir(tmp_path_factory.mktemp("models") / "S0")))
    path = tmp_path_factory.mktemp("onnx") / "S0.onnx"
    export_tiny(model, path)
    return path


@pytest.fixture(scope="module")
def face_photo(tmp_path_factory) -> Path:
    """A real photograph of one face (shipped with matplotlib), so detection is tested offline."""
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        image = Image.open(fh).convert("RGB")
    path = tmp_path_factory.mktemp("photos") / "hopper.jpg"
    image.resize((256, 300)).save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def celeba(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("celeba")
    make_tree(root, subjects=3, per_class=(1, 1), size=(100, 80))
    # An off-centre, non-square box exercises the 224-frame conversion on both axes.
    for bb in root.rglob("*_BB.txt"):
        bb.write_text("30 40 100 120 0.93\n")
    return root


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_preprocessing_equals_the_evaluation_pipeline(celeba, model_path):
    table, _ = ingest(celeba, LABEL_FILES, {})
    faces = build_face_cache(table, celeba, MARGIN, FACE_SIZE)
    dataset = FaceDataset(faces, table["label"].to_numpy(), eval_transform(INPUT_SIZE))
    predictor = Predictor(model_path)
    assert (predictor.face_margin, predictor.face_size, predictor.input_size) == (MARGIN, FACE_SIZE, INPUT_SIZE)
    for i, rel in enumerate(table["path"].to_list()):
        image_path = celeba / rel
        image = read_image(image_path)
        box = read_box_file(image_path.with_name(image_path.stem + "_BB.txt"), image.width, image.height)
        assert box == pytest.approx((table["box_x"][i], table["box_y"][i], table["box_w"][i], table["box_h"][i]))
        got = torch.from_numpy(predictor.preprocess(image, box))[0]
        assert torch.equal(got, dataset[i][0]), rel


def test_cli_scores_an_image_with_its_box_file(celeba, model_path, capsys):
    image = next(celeba.rglob("*.png"))
    bb = image.with_name(image.stem + "_BB.txt")
    code, out, _ = run_cli(capsys, image, "--model", model_path, "--box", bb, "--json")
    assert code == 0
    (result,) = json.loads(out)["predictions"]
    assert result["label"] in ("live", "spoof")
    assert 0.0 <= result["spoof_probability"] <= 1.0
    assert result["label"] == ("spoof" if result["spoof_probability"] >= 0.5 else "live")
    assert result["box_source"] == "bb_file"
    # 224 frame -> 100x80 pixels: x * 100/224, y * 80/224.
    assert result["box"] == pytest.approx([30 * 100 / 224, 40 * 80 / 224, 100 * 100 / 224, 120 * 80 / 224], abs=0.01)
    assert result["inference_ms"] > 0


def test_cli_detects_the_face_in_a_photo(face_photo, model_path, capsys):
    code, out, err = run_cli(capsys, face_photo, "--model", model_path)
    assert code == 0, err
    assert str(face_photo) in out and "P(spoof)=" in out and "[detector]" in out
    code, out, _ = run_cli(capsys, face_photo, "--model", model_path, "--json")
    x, y, w, h = json.loads(out)["predictions"][0]["box"]
    assert 50 < x < 120 and 30 < y < 90 and 80 < w < 160  # the face, not the whole 256x300 image


def test_cli_rejects_several_faces(face_photo, model_path, tmp_path, capsys):
    single = Image.open(face_photo)
    pair = Image.new("RGB", (single.width * 2, single.height))
    pair.paste(single, (0, 0))
    pair.paste(single, (single.width, 0))
    pair.save(tmp_path / "pair.png")
    code, out, err = run_cli(capsys, tmp_path / "pair.png", "--model", model_path)
    assert code == 1
    assert "2 faces found" in err and out == ""


def test_cli_errors_per_image(face_photo, model_path, tmp_path, capsys):
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(noise)
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(face_photo.read_bytes()[:2000])
    code, out, err = run_cli(capsys, noise, text, tmp_path / "absent.png", truncated, "--model", model_path)
    assert code == 1
    assert out == ""
    assert f"{noise}: no face found" in err
    assert f"{text}: not an image file" in err
    assert "absent.png: no such file" in err
    assert f"{truncated}: unreadable image" in err
    assert "none of the 4 image(s) could be scored" in err


def test_cli_scores_the_good_images_and_still_fails_on_a_bad_one(face_photo, model_path, tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    code, out, err = run_cli(capsys, face_photo, text, "--model", model_path, "--json")
    assert code == 1
    good, bad = json.loads(out)["predictions"]
    assert good["label"] in ("live", "spoof") and "error" not in good
    assert "not an image file" in bad["error"]


def test_cli_rejects_bad_box_files(celeba, model_path, tmp_path, capsys):
    image = next(celeba.rglob("*.png"))
    empty = tmp_path / "empty_BB.txt"
    empty.write_text("")
    outside = tmp_path / "outside_BB.txt"
    outside.write_text("500 500 20 20 0.9\n")
    code, _, err = run_cli(capsys, image, image, "--model", model_path, "--box", empty, "--box", outside)
    assert code == 1
    assert "empty_BB.txt: not a box file" in err
    assert "outside_BB.txt: box" in err and "no area inside" in err
    code, _, err = run_cli(capsys, image, image, "--model", model_path, "--box", empty)
    assert code == 2 and "1 --box file(s) for 2 image(s)" in err


def test_cli_rejects_a_model_it_cannot_use(face_photo, tmp_path, capsys):
    code, _, err = run_cli(capsys, face_photo, "--model", tmp_path / "missing.onnx")
    assert code == 2 and "missing.onnx not found" in err
    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("hello")
    code, _, err = run_cli(capsys, face_photo, "--model", garbage)
    assert code == 2 and "garbage.onnx" in err
    bare = tmp_path / "bare.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input"], ["logits"])],
        "g",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 2])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 2])],
    )
    onnx.save(onnx.helper.make_model(graph), str(bare))
    code, _, err = run_cli(capsys, face_photo, "--model", bare)
    assert code == 2 and "lacks the fasflow metadata" in err


def test_cli_reads_the_box_file_next_to_each_image(celeba, model_path, tmp_path, capsys):
    image = next(celeba.rglob("*.png"))
    lonely = tmp_path / "lonely.png"
    lonely.write_bytes(image.read_bytes())
    code, out, err = run_cli(capsys, image, lonely, "--model", model_path, "--celeba-box", "--json")
    assert code == 1
    good, bad = json.loads(out)["predictions"]
    assert good["box_source"] == "bb_file"
    assert "lonely_BB.txt: cannot read box file" in bad["error"]

"""`fasflow predict`: evaluation-identical preprocessing, face detection and per-image errors."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
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
from fasflow.errors import DataError
from fasflow.export import add_metadata
from fasflow.models import load_trained
from fasflow.faces import build_face_cache
from fasflow.infer import STAGES, Predictor, check_io, parse_metadata, read_box_file, read_image, TensorSpec
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


def test_a_large_photo_is_cropped_as_the_face_cache_crops_it(model_path, tmp_path):
    """Above a megapixel the cache decodes JPEGs at reduced scale; predict crops the same way."""
    from fasflow.faces import decode_face

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(coarse).resize((1600, 1200), Image.Resampling.BICUBIC).save(photo, quality=90)
    predictor = Predictor(model_path)
    image = read_image(photo)
    box = (500.0, 300.0, 600.0, 600.0)
    expected, scale = decode_face(photo, box, MARGIN, FACE_SIZE)
    assert scale > 1  # the reduced path really applies to this photo
    assert np.array_equal(predictor.crop_file(photo, image, box), expected)
    assert not np.array_equal(predictor.crop(image, box), expected)  # a full decode differs slightly


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
    # The whole per-image cost, stage by stage, and the one-time model load.
    timings = result["timings_ms"]
    assert set(timings) == {*STAGES, "total"} and all(v >= 0 for v in timings.values())
    assert timings["total"] == pytest.approx(sum(timings[s] for s in STAGES))
    assert timings["inference"] == result["inference_ms"]
    timing = json.loads(out)["timing"]
    assert timing["images_scored"] == 1 and timing["model_load_ms"] > 0
    assert timing["command_ms"] >= timing["model_load_ms"] + timings["total"]
    assert timing["median_total_ms"] == pytest.approx(timings["total"])


def test_cli_detects_the_face_in_a_photo(face_photo, model_path, capsys):
    code, out, err = run_cli(capsys, face_photo, "--model", model_path)
    assert code == 0, err
    assert str(face_photo) in out and "P(spoof)=" in out and "[detector]" in out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("timing (onnxruntime, 1 thread(s)): ") and "model load" in summary and "ms in all" in summary
    assert "face detection" in summary and "inference" in summary and "median of 1" in summary
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


def test_a_large_photo_gives_its_box_in_its_own_pixels(face_photo, model_path, tmp_path, capsys):
    """The same photo at 8x the size: the face is found and its box scales with the photo."""
    small = Image.open(face_photo)
    big = small.resize((small.width * 8, small.height * 8))
    big.save(tmp_path / "big.jpg", quality=90)
    code, out, err = run_cli(capsys, face_photo, tmp_path / "big.jpg", "--model", model_path, "--json")
    assert code == 0, err
    near, far = (p["box"] for p in json.loads(out)["predictions"])
    assert far == pytest.approx([8 * v for v in near], rel=0.15)


# ---------------------------------------------------------------------------
# Nothing in a model file is trusted


def graph_model(path: Path, input_shape, output_width: int = 2, inputs: int = 1, meta: dict | None = None) -> Path:
    """A small valid ONNX graph (pool, flatten, linear head) with the given input shape and fasflow metadata."""
    h = onnx.helper
    channels = input_shape[1] if len(input_shape) > 1 and isinstance(input_shape[1], int) else 3
    weight = h.make_tensor("w", onnx.TensorProto.FLOAT, [output_width, channels], np.ones(output_width * channels, np.float32))
    nodes = [
        h.make_node("GlobalAveragePool", ["input"], ["p"]),
        h.make_node("Flatten", ["p"], ["f"]),
        h.make_node("Gemm", ["f", "w"], ["logits"], transB=1),
    ]
    graph_inputs = [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, input_shape)]
    graph_inputs += [h.make_tensor_value_info(f"extra{i}", onnx.TensorProto.FLOAT, [1]) for i in range(inputs - 1)]
    graph = h.make_graph(nodes, "g", graph_inputs, [h.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", output_width])], [weight])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    values = {"input_size": str(INPUT_SIZE), "face_margin": str(MARGIN), "face_size": str(FACE_SIZE), **(meta or {})}
    h.set_model_props(model, {f"fasflow.{k}": v for k, v in values.items()})
    onnx.save(model, str(path))
    return path


def test_a_well_formed_graph_is_accepted(face_photo, tmp_path, capsys):
    path = graph_model(tmp_path / "ok.onnx", ["batch", 3, INPUT_SIZE, INPUT_SIZE])
    code, out, err = run_cli(capsys, face_photo, "--model", path, "--json")
    assert code == 0, err
    assert json.loads(out)["predictions"][0]["spoof_probability"] == pytest.approx(0.5)  # equal logits
    # Dynamic spatial size is fine too: the network is fully convolutional.
    path = graph_model(tmp_path / "dyn.onnx", ["batch", 3, "h", "w"])
    assert run_cli(capsys, face_photo, "--model", path)[0] == 0


@pytest.mark.parametrize(
    "shape, outputs, inputs, message",
    [
        ([1, 1, INPUT_SIZE, INPUT_SIZE], 2, 1, r"input 'input' must have shape \(N, 3, 32, 32\).*got \(1, 1, 32, 32\)"),
        (["n", 3, 48, 48], 2, 1, r"must have shape \(N, 3, 32, 32\).*got \(\?, 3, 48, 48\)"),
        ([4, 3, INPUT_SIZE, INPUT_SIZE], 2, 1, r"batch 1 or dynamic"),
        (["n", 3, INPUT_SIZE], 2, 1, r"got \(\?, 3, 32\)"),
        (["n", 3, INPUT_SIZE, INPUT_SIZE], 3, 1, r"output 'logits' must have shape \(N, 2\).*got \(\?, 3\)"),
        (["n", 3, INPUT_SIZE, INPUT_SIZE], 2, 2, r"expected one input .* has 2"),
    ],
)
def test_predict_rejects_a_graph_it_cannot_feed(face_photo, tmp_path, capsys, shape, outputs, inputs, message):
    path = graph_model(tmp_path / "bad.onnx", shape, output_width=outputs, inputs=inputs)
    code, out, err = run_cli(capsys, face_photo, "--model", path)
    assert code == 2 and out == ""
    assert "bad.onnx" in err
    assert __import__("re").search(message, err), err


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"input_size": "32.0"}, "fasflow.input_size must be a whole number, got '32.0'"),
        ({"input_size": "0", "face_size": "0"}, "fasflow.input_size must be > 0"),
        ({"input_size": "abc"}, "fasflow.input_size must be a whole number"),
        ({"face_margin": "wide"}, "fasflow.face_margin must be a number, got 'wide'"),
        ({"face_margin": "-0.1"}, "fasflow.face_margin must be a finite number >= 0"),
        ({"face_margin": "nan"}, "fasflow.face_margin must be a finite number >= 0"),
        ({"face_size": "16"}, r"fasflow.face_size \(16\) must be >= fasflow.input_size \(32\)"),
        ({"face_size": "[40]"}, "fasflow.face_size must be a whole number"),
    ],
)
def test_predict_rejects_metadata_of_the_wrong_type(face_photo, model_path, tmp_path, capsys, meta, message):
    path = tmp_path / "meta.onnx"
    shutil.copyfile(model_path, path)
    add_metadata(path, {f"fasflow.{k}": v for k, v in meta.items()})
    code, _, err = run_cli(capsys, face_photo, "--model", path)
    assert code == 2
    assert "meta.onnx" in err and __import__("re").search(message, err), err


def test_contract_checks_directly():
    contract = parse_metadata("m.onnx", {"input_size": "224", "face_margin": "0.2", "face_size": "256"})
    assert (contract.input_size, contract.face_margin, contract.face_size) == (224, 0.2, 256)
    good_in = [TensorSpec("x", "float32", (None, 3, 224, 224))]
    check_io("m.onnx", good_in, [TensorSpec("y", "float32", (None, 2))], 224)
    with pytest.raises(DataError, match="m.onnx: input 'x' must be float32, got uint8"):
        check_io("m.onnx", [TensorSpec("x", "uint8", (1, 3, 224, 224))], [TensorSpec("y", "float32", (1, 2))], 224)
    with pytest.raises(DataError, match="m.onnx: the model has no output"):
        check_io("m.onnx", good_in, [], 224)
    with pytest.raises(DataError, match="must have shape .* got unknown"):
        check_io("m.onnx", [TensorSpec("x", "float32", None)], [TensorSpec("y", "float32", (1, 2))], 224)


# ---------------------------------------------------------------------------
# Command-line numbers


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--threads", "0"], "argument --threads: must be a whole number >= 1, got 0"),
        (["--threads", "two"], "argument --threads: must be a whole number >= 1, got 'two'"),
        (["--threshold", "1.5"], "argument --threshold: must be a number in [0, 1], got 1.5"),
        (["--threshold", "nan"], "argument --threshold: must be a number in [0, 1], got nan"),
        (["--threshold", "-0.1"], "argument --threshold: must be a number in [0, 1]"),
        (["--max-pixels", "0"], "argument --max-pixels: must be a whole number >= 1, got 0"),
        (["--engine", "tensorrt"], "argument --engine: invalid choice: 'tensorrt'"),
    ],
)
def test_cli_rejects_bad_numbers(face_photo, model_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(face_photo), "--model", str(model_path), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_threshold_decides_the_label(face_photo, model_path, capsys):
    labels = {}
    for threshold in ("0", "1"):
        code, out, _ = run_cli(capsys, face_photo, "--model", model_path, "--json", "--threshold", threshold)
        assert code == 0
        document = json.loads(out)
        assert document["threshold"] == float(threshold)
        labels[threshold] = document["predictions"][0]["label"]
        probability = document["predictions"][0]["spoof_probability"]
    assert labels["0"] == "spoof"
    assert labels["1"] == ("spoof" if probability >= 1.0 else "live")


def test_openvino_engine_reads_the_same_file(face_photo, model_path, capsys):
    scores = {}
    for engine in ("onnxruntime", "openvino"):
        code, out, err = run_cli(capsys, face_photo, "--model", model_path, "--json", "--engine", engine)
        assert code == 0, err
        document = json.loads(out)
        assert document["engine"] == engine
        scores[engine] = document["predictions"][0]["spoof_probability"]
    assert scores["openvino"] == pytest.approx(scores["onnxruntime"], abs=1e-4)


# ---------------------------------------------------------------------------
# Decompression bombs


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels (a few bytes on disk: nothing is ever decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_is_an_error_for_that_image_only(face_photo, model_path, tmp_path, capsys):
    bomb = png_header(tmp_path / "bomb.png", 100_000, 100_000)  # 10^10 pixels: PIL's error range
    limit = Image.MAX_IMAGE_PIXELS
    code, out, err = run_cli(capsys, bomb, face_photo, "--model", model_path, "--json")
    assert code == 1
    bad, good = json.loads(out)["predictions"]
    assert "bomb.png: refused as a possible decompression bomb" in bad["error"] and "--max-pixels" in bad["error"]
    assert good["label"] in ("live", "spoof")
    assert Image.MAX_IMAGE_PIXELS == limit  # the limit is restored after each image


def test_images_in_the_warning_range_are_refused_too(face_photo, model_path, tmp_path, capsys):
    """PIL only warns between the limit and twice the limit; fasflow predict refuses both ranges."""
    warned = tmp_path / "warned.png"
    Image.new("RGB", (40, 40)).save(warned)  # 1,600 pixels: above 1,000, below 2,000
    refused = tmp_path / "refused.png"
    Image.new("RGB", (100, 100)).save(refused)  # 10,000 pixels: above twice 1,000
    fine = tmp_path / "fine.png"
    Image.open(face_photo).resize((30, 30)).save(fine)  # 900 pixels: allowed (then no face is found)
    code, _, err = run_cli(capsys, warned, refused, fine, "--model", model_path, "--max-pixels", "1000")
    assert code == 1
    assert f"{warned}: refused as a possible decompression bomb" in err
    assert f"{refused}: refused as a possible decompression bomb" in err
    assert f"{fine}: no face found" in err  # decoded: the limit let it through
    assert read_image(warned, max_pixels=2000).size == (40, 40)

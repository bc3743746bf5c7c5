"""INT8 quantization chosen on validation faces, latency of every engine, and Table 4, on tiny models."""

from __future__ import annotations

import json

import numpy as np
import onnx
import polars as pl
import pytest
import torch

from fasflow import quantize
from fasflow.errors import ConfigError, DataError
from fasflow.export import export_trained, open_session, read_metadata
from fasflow.latency import (
    Runner,
    latency_sizes,
    measure,
    resized_parity,
    measure_trained,
    summarize,
    thread_settings,
    time_interleaved,
    with_input_size,
)
from fasflow.quantize import calibration_indices, exclusion_levels, run_quantize
from fasflow.tables import table4_rows, write_table4
from conftest import model_paths
from onnx_models import FACE_SIZE, INPUT_SIZE, MARGIN, make_model_dir

from fasflow.models import load_trained

torch.set_num_threads(1)


def write_split(root, name: str, faces: np.ndarray, seed: int) -> None:
    """Faces + a manifest with labels, attack types and subjects (4 images per subject)."""
    labels = np.array([0, 1, 1] * (len(faces) // 3))
    np.save(root / f"{name}.npy", faces)
    pl.DataFrame(
        {
            "label": labels,
            "spoof_type": np.where(labels == 1, 1 + np.arange(len(labels)) % 3, 0),
            "subject_id": [f"{seed}-{i // 4}" for i in range(len(labels))],
        }
    ).write_parquet(root / f"{name}.parquet")


def quantize_args(root, **overrides) -> dict:
    args = dict(
        name="S0",
        fp32_path=root / "onnx" / "S0.onnx",
        int8_path=root / "onnx" / "S0.int8.onnx",
        report_path=root / "onnx" / "S0.int8.json",
        val_faces_path=root / "val.npy",
        val_manifest_path=root / "val.parquet",
        test_faces_path=root / "test.npy",
        test_manifest_path=root / "test.parquet",
        calibration_size=16,
        calibration_methods=["minmax", "percentile"],
        per_channel=True,
        reduce_range=False,
        max_val_acer_change=1.0,
        openvino=True,
        bootstrap_n=50,
        seed=0,
        ci_level=0.95,
        threads=1,
    )
    args.update(overrides)
    return args


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A trained-model folder, val/test face caches and manifests, the FP32 and INT8 models, all tiny."""
    root = tmp_path_factory.mktemp("results")
    model_dir = make_model_dir(root / "models" / "S0")
    rng = np.random.default_rng(0)
    # Smooth blobs rather than white noise: closer to faces, so calibration ranges are meaningful.
    base = rng.integers(0, 256, size=(60, 5, 5, 3)).astype(np.uint8)
    faces = np.kron(base, np.ones((1, 8, 8, 1), dtype=np.uint8))
    assert faces.shape[1:] == (FACE_SIZE, FACE_SIZE, 3)
    write_split(root, "val", faces[:30], seed=1)
    write_split(root, "test", faces[30:], seed=2)
    report = export_trained(
        "S0", *model_paths(model_dir), root / "onnx" / "S0.onnx", root / "onnx" / "S0.json", root / "test.npy", MARGIN, FACE_SIZE
    )
    int8 = run_quantize(**quantize_args(root))
    return root, model_dir, report, int8


def test_export_report_records_parity_on_every_test_face(workspace):
    root, _, report, _ = workspace
    assert report["parity"]["n_faces"] == 30 and report["parity"]["passed"]
    assert json.loads((root / "onnx" / "S0.json").read_text())["onnx"]["opset"] == 17


def test_int8_model_runs_and_agrees_with_fp32(workspace):
    root, _, _, int8 = workspace
    path = root / "onnx" / "S0.int8.onnx"
    session = open_session(path, threads=1)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    out = session.run(None, {"input": np.zeros((3, 3, INPUT_SIZE, INPUT_SIZE), np.float32)})[0]
    assert out.shape == (3, 2) and np.isfinite(out).all()
    test = int8["test"]
    assert test["n_faces"] == 30
    assert test["label_agreement"] >= 0.8
    for precision in ("fp32", "int8", "openvino_fp32", "openvino_int8"):
        assert set(test[precision]) >= {"apcer", "bpcer", "acer"}
        assert test[precision]["acer"] == pytest.approx((test[precision]["apcer"] + test[precision]["bpcer"]) / 2)
    # OpenVINO runs the FP32 file in FP32: its decisions are ONNX Runtime's.
    assert test["openvino_fp32"]["acer"] == test["fp32"]["acer"]
    lo, hi = test["fp32_acer_interval"]
    assert lo <= test["fp32"]["acer"] <= hi
    assert test["int8_acer_within_fp32_interval"] == (lo <= test["int8"]["acer"] <= hi)
    # The INT8 file keeps the preprocessing metadata, so `fasflow predict` can use it too.
    meta = read_metadata(path)
    assert meta["precision"] == "int8-static-qdq" and int(meta["face_size"]) == FACE_SIZE
    assert json.loads(meta["int8_recipe"])["calibration"] == int8["recipe"]["calibration"]
    assert int8["onnx"]["size_bytes"] < (root / "onnx" / "S0.onnx").stat().st_size


def test_recipe_is_chosen_on_validation_faces(workspace):
    _, _, _, int8 = workspace
    selection = int8["selection"]
    assert selection["val_faces"] == 30 and not int8["fallback"]
    candidates = selection["candidates"]
    # With a tolerance of 1 the first level accepts every method: both were tried, nothing excluded.
    assert [(c["calibration"], c["exclusion"]) for c in candidates] == [("minmax", "none"), ("percentile", "none")]
    assert all(c["accepted"] for c in candidates)
    chosen = [c for c in candidates if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["calibration"] == int8["recipe"]["calibration"]
    assert chosen[0]["flip_rate"] == min(c["flip_rate"] for c in candidates)
    for c in candidates:
        assert c["val_acer_change"] == pytest.approx(c["val_acer"] - selection["fp32_val"]["acer"])
        assert 0 <= c["flip_rate"] <= 1 and c["mean_abs_score_diff"] >= 0


def fake_scores(monkeypatch, flips_for):
    """Replace ONNX Runtime scoring: FP32 files score by face index; a candidate flips `flips_for(path)` faces."""

    def score(path, inputs, threads=None):
        base = np.where(np.arange(len(inputs)) % 3 == 0, 0.2, 0.8)  # the labels [0, 1, 1, ...]: FP32 is perfect
        k = flips_for(str(path))
        base[:k] = 1 - base[:k]
        return base

    monkeypatch.setattr(quantize, "score_faces", score)


def test_no_acceptable_candidate_falls_back_to_fp32(workspace, tmp_path, monkeypatch):
    root, _, _, _ = workspace
    # Every INT8 candidate flips 6 of 30 validation faces (the FP32 files flip none).
    fake_scores(monkeypatch, lambda path: 6 if "fasflow-int8-" in path and not path.endswith("pre.onnx") else 0)
    args = quantize_args(root, int8_path=tmp_path / "S0.int8.onnx", report_path=tmp_path / "S0.int8.json", max_val_acer_change=0.01)
    report = run_quantize(**args)
    assert report["fallback"] and report["precision"] == "fp32-fallback" and report["recipe"] is None
    # Every exclusion level was tried with both methods before giving up.
    assert {c["exclusion"] for c in report["selection"]["candidates"]} == {e for e, _ in exclusion_levels_of(root)}
    assert not any(c["accepted"] or c["chosen"] for c in report["selection"]["candidates"])
    meta = read_metadata(tmp_path / "S0.int8.onnx")
    assert meta["precision"] == "fp32-fallback" and int(meta["input_size"]) == INPUT_SIZE
    ops = {node.op_type for node in onnx.load(str(tmp_path / "S0.int8.onnx")).graph.node}
    assert "QuantizeLinear" not in ops  # the FP32 graph
    assert json.loads((tmp_path / "S0.int8.json").read_text())["fallback"] is True


def test_exclusion_is_used_only_when_the_full_model_fails(workspace, tmp_path, monkeypatch):
    root, _, _, _ = workspace

    def flips(path):
        if "fasflow-int8-" not in path or path.endswith("pre.onnx"):
            return 0
        return 6 if ".none." in path else 1  # quantizing everything hurts; keeping nodes in FP32 helps

    fake_scores(monkeypatch, flips)
    args = quantize_args(root, int8_path=tmp_path / "S0.int8.onnx", report_path=tmp_path / "S0.int8.json", max_val_acer_change=0.06)
    report = run_quantize(**args)
    levels = exclusion_levels_of(root)
    assert report["recipe"]["exclusion"] == levels[1][0]
    assert len(report["recipe"]["excluded_nodes"]) == len(levels[1][1]) > 0
    assert json.loads(read_metadata(tmp_path / "S0.int8.onnx")["int8_recipe"])["excluded_nodes"] == report["recipe"]["excluded_nodes"]


def exclusion_levels_of(root):
    from fasflow.quantize import preprocess

    return exclusion_levels(preprocess(root / "onnx" / "S0.onnx", root / "pre-levels.onnx"))


def test_exclusion_levels_find_gates_first_conv_and_classifier(tmp_path):
    """SiLU (Sigmoid * x) and a Gemm head: level 2 keeps the gates, level 3 adds first conv and head."""
    h = onnx.helper
    w = h.make_tensor("w", onnx.TensorProto.FLOAT, [4, 3, 1, 1], np.ones(12, np.float32))
    g = h.make_tensor("g", onnx.TensorProto.FLOAT, [2, 4], np.ones(8, np.float32))
    nodes = [
        h.make_node("Conv", ["x", "w"], ["c"], name="stem"),
        h.make_node("Sigmoid", ["c"], ["s"], name="act/Sigmoid"),
        h.make_node("Mul", ["c", "s"], ["a"], name="act/Mul"),
        h.make_node("GlobalAveragePool", ["a"], ["p"], name="pool"),
        h.make_node("Flatten", ["p"], ["f"], name="flat"),
        h.make_node("Gemm", ["f", "g"], ["y"], name="head", transB=1),
    ]
    graph = h.make_graph(
        nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])], [w, g],
    )
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(tmp_path / "silu.onnx"))
    levels = exclusion_levels(tmp_path / "silu.onnx")
    assert levels == [
        ("none", []),
        ("activation-gates", ["act/Sigmoid", "act/Mul"]),
        ("activation-gates+first-last", ["act/Sigmoid", "act/Mul", "stem", "head"]),
    ]


def test_exclusion_levels_skip_what_a_relu6_network_lacks(workspace):
    levels = exclusion_levels_of(workspace[0])
    # MobileNetV2 has no Sigmoid/Mul gates: the gates level would repeat "none" and is dropped.
    assert [name for name, _ in levels] == ["none", "activation-gates+first-last"]
    assert len(levels[1][1]) == 2


def test_quantize_rejects_unknown_methods(workspace, tmp_path):
    root = workspace[0]
    with pytest.raises(ConfigError, match="calibration_methods"):
        run_quantize(**quantize_args(root, int8_path=tmp_path / "x.onnx", report_path=tmp_path / "x.json", calibration_methods=["kl"]))
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "x.json").exists()


def test_calibration_indices_are_spread_and_bounded():
    picked = calibration_indices(10, 3).tolist()
    assert len(picked) == 3 and picked[0] == 0 and picked[-1] == 9 and picked == sorted(picked)
    assert calibration_indices(4, 100).tolist() == [0, 1, 2, 3]


def test_summary_statistics_thread_and_size_settings():
    stats = summarize(np.arange(1, 101, dtype=float))
    assert stats["runs"] == 100 and stats["mean_ms"] == pytest.approx(50.5)
    assert stats["median_ms"] == pytest.approx(50.5)
    assert stats["p90_ms"] == pytest.approx(90.1) and stats["p95_ms"] == pytest.approx(95.05)
    assert thread_settings(1) == [1] and thread_settings(2) == [1, 2] and thread_settings(8) == [1, 2, 8]
    assert latency_sizes(48, [224]) == [224, 48] and latency_sizes(224, [224]) == [224]
    with pytest.raises(ConfigError, match="input_sizes"):
        latency_sizes(48, [0])


def test_engines_are_timed_interleaved_in_blocks():
    events = []

    def runner(name):
        return Runner(name, lambda: events.append(name), prepare=lambda: events.append(f"prepare {name}"))

    times = time_interleaved([runner("a"), runner("b")], warmup=1, runs=7, block=3, pause_s=0)
    assert {k: len(v) for k, v in times.items()} == {"a": 7, "b": 7}
    calls = [e for e in events if not e.startswith("prepare")]
    # Warm-up (1 each), then blocks of 1 untimed + 3, 3, 1 timed calls, alternating a, b, a, b, ...
    assert calls == ["a", "b"] + ["a"] * 4 + ["b"] * 4 + ["a"] * 4 + ["b"] * 4 + ["a"] * 2 + ["b"] * 2
    assert events.count("prepare a") == 4  # once for the warm-up, once before each block
    with pytest.raises(ValueError, match="repeat"):
        time_interleaved([runner("a"), runner("a")], 0, 1)


def test_resized_onnx_graph_is_the_network_at_the_new_size(workspace, tmp_path):
    root, model_dir, _, _ = workspace
    model, _ = load_trained(*model_paths(model_dir))
    for precision in ("S0", "S0.int8"):
        resized = with_input_size(root / "onnx" / f"{precision}.onnx", tmp_path / f"{precision}-64.onnx", 64)
        session = open_session(resized, threads=1)
        assert session.get_inputs()[0].shape[1:] == [3, 64, 64]
        assert session.run(None, {"input": np.zeros((2, 3, 64, 64), np.float32)})[0].shape == (2, 2)
    assert resized_parity(model, tmp_path / "S0-64.onnx", 64) < 1e-3


def test_latency_of_every_engine_and_table4(workspace, tmp_path):
    root, model_dir, _, _ = workspace
    model, _ = load_trained(*model_paths(model_dir))
    result = measure(
        model, root / "onnx" / "S0.onnx", root / "onnx" / "S0.int8.onnx", INPUT_SIZE, [48], [1],
        ["torch", "onnxruntime", "openvino"], warmup=1, runs=4, throughput_batch=2, throughput_runs=2,
    )
    assert result["input_sizes"] == [48, INPUT_SIZE]
    assert result["engines"] == ["torch_eager", "ort_fp32", "ort_int8", "openvino_fp32", "openvino_int8"]
    assert len(result["records"]) == 2 * 1 * 2 * 5  # sizes x threads x batches x engines
    for r in result["records"]:
        assert r["runs"] == (4 if r["batch"] == 1 else 2)
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["p95_ms"]
        assert r["images_per_s"] == pytest.approx(1e3 * r["batch"] / r["median_ms"])
    ratio = next(r for r in result["ratios"] if (r["input_size"], r["threads"], r["batch"]) == (48, 1, 1))
    med = {r["engine"]: r["median_ms"] for r in result["records"] if (r["input_size"], r["threads"], r["batch"]) == (48, 1, 1)}
    assert ratio["torch_eager_over_ort_fp32"] == pytest.approx(med["torch_eager"] / med["ort_fp32"])
    assert ratio["fastest_int8"] == min(("ort_int8", "openvino_int8"), key=med.get)
    assert result["resized_parity_max_abs_logit_diff"]["48"] < 1e-3
    assert result["system"]["cpu_flags"] and all(isinstance(f, str) for f in result["system"]["cpu_flags"])

    (tmp_path / "S0.latency.json").write_text(json.dumps(result))
    # A second model whose INT8 fell back to FP32 is marked in the table.
    fallback = json.loads((root / "onnx" / "S0.int8.json").read_text()) | {"fallback": True, "recipe": None}
    (tmp_path / "S1.int8.json").write_text(json.dumps(fallback))
    rows = table4_rows(
        ["S0", "S1"],
        {"S0": root / "onnx" / "S0.json", "S1": root / "onnx" / "S0.json"},
        {"S0": tmp_path / "S0.latency.json", "S1": tmp_path / "S0.latency.json"},
        {"S0": root / "onnx" / "S0.int8.json", "S1": tmp_path / "S1.int8.json"},
    )
    write_table4(rows, tmp_path / "t4.csv", tmp_path / "t4.md")
    table = pl.read_csv(tmp_path / "t4.csv")
    assert table["model"].to_list() == ["S0", "S0", "S1", "S1"]
    assert table["input_size"].to_list() == [48, INPUT_SIZE, 48, INPUT_SIZE]  # deployment size first
    assert table["parameters_m"][0] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
    assert table["ort_fp32_median_ms"][0] == pytest.approx(med["ort_fp32"], rel=1e-5)
    assert table["int8_fallback"].to_list() == [False, False, True, True]
    md = (tmp_path / "t4.md").read_text()
    assert "| S0 | 48 | 1 |" in md and "OpenVINO INT8 median / p95 ms" in md and "ONNX size (MiB)" in md
    assert "S1 (INT8 = FP32 fallback)" in md and "FP32 fallback" in md


def test_measure_trained_takes_weights_and_summary_paths(workspace, tmp_path):
    root, model_dir, _, _ = workspace
    result = measure_trained(
        model_dir / "weights.safetensors", model_dir / "summary.json", root / "onnx" / "S0.onnx", None, tmp_path / "lat.json",
        threads=1, warmup=0, runs=2, sizes=[INPUT_SIZE], engines=["onnxruntime"], throughput_batch=2, throughput_runs=1,
    )
    assert json.loads((tmp_path / "lat.json").read_text())["records"] == result["records"]
    assert {r["engine"] for r in result["records"]} == {"ort_fp32"} and result["input_sizes"] == [INPUT_SIZE]
    with pytest.raises(ConfigError, match="engines"):
        measure_trained(
            model_dir / "weights.safetensors", model_dir / "summary.json", root / "onnx" / "S0.onnx", None, tmp_path / "x.json",
            threads=1, warmup=0, runs=1, sizes=[INPUT_SIZE], engines=["tensorrt"], throughput_batch=1, throughput_runs=1,
        )
    assert not (tmp_path / "x.json").exists()


def test_a_calibration_method_that_fails_is_skipped_and_reported(workspace, tmp_path, monkeypatch):
    root = workspace[0]
    real = quantize.calibrate

    def calibrate(pre, faces, size, method, cache):
        if method == "percentile":
            raise ValueError("Too many bins for data range")
        return real(pre, faces, size, method, cache)

    monkeypatch.setattr(quantize, "calibrate", calibrate)
    args = quantize_args(root, int8_path=tmp_path / "S0.int8.onnx", report_path=tmp_path / "S0.int8.json")
    report = run_quantize(**args)
    assert report["selection"]["failed_calibrations"] == {"percentile": "ValueError: Too many bins for data range"}
    assert [c["calibration"] for c in report["selection"]["candidates"]] == ["minmax"]
    assert report["recipe"]["calibration"] == "minmax"

    monkeypatch.setattr(quantize, "calibrate", lambda *a, **k: (_ for _ in ()).throw(ValueError("no range")))
    args = quantize_args(root, int8_path=tmp_path / "none.int8.onnx", report_path=tmp_path / "none.int8.json")
    with pytest.raises(DataError, match="every INT8 calibration method failed"):
        run_quantize(**args)
    assert not (tmp_path / "none.int8.onnx").exists() and not (tmp_path / "none.int8.json").exists()


def test_network_inputs_are_the_evaluation_tensors(tmp_path):
    from fasflow.export import preprocessed_batches
    from fasflow.quantize import network_inputs

    faces = np.random.default_rng(3).integers(0, 256, size=(70, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
    inputs = network_inputs(faces, INPUT_SIZE, tmp_path / "x.npy", batch_size=64)
    expected = np.concatenate(list(preprocessed_batches(faces, INPUT_SIZE, 64)))
    assert inputs.shape == (70, 3, INPUT_SIZE, INPUT_SIZE) and np.array_equal(inputs, expected)


def test_quantization_is_deterministic(workspace, tmp_path):
    from fasflow.quantize import quantize_int8

    root = workspace[0]
    faces = np.load(root / "val.npy")[:28]  # passes of 16 and 12 faces (percentile once failed on a short last pass)
    for name in ("a", "b"):
        quantize_int8(root / "onnx" / "S0.onnx", tmp_path / f"{name}.onnx", faces, INPUT_SIZE, method="percentile")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_calibration_passes_hold_the_same_memory_at_every_input_size():
    assert quantize.calibration_chunk(224) == quantize.CALIBRATION_CHUNK
    # 48 px: about 21x fewer activations per face, so the demo's 64 faces go in one pass.
    assert quantize.calibration_chunk(48) >= 64
    assert quantize.calibration_chunk(512) == quantize.CALIBRATION_CHUNK  # never below the 224 px chunk

"""The export rules end to end through Snakemake, on fabricated trained models.

Only the export rules may run (--allowed-rules): fabricated models, face caches and splits
stand in for the training part. Then `fasflow predict` scores an image with an exported model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from celeba_tree import make_tree
from eval_fakes import fabricated_study

from fasflow.data import eval_transform
from fasflow.export import open_session, softmax_spoof
from fasflow.infer import Predictor, read_box_file, read_image

ROOT = Path(__file__).resolve().parents[1]
EXPORT_RULES = ["export_onnx", "quantize_onnx", "latency", "table_onnx", "table4", "onnx"]
MODELS = ["S0", "S1", "S2", "S3"]  # the teacher is left out (export.include_teacher) to keep this quick
# OpenVINO is left to the unit tests (test_quantize_latency): here it would only add compile time.
CONFIG = """
export:
  include_teacher: false
  openvino: false
  latency: {warmup: 1, runs: 3}
  int8: {calibration_size: 8}
"""


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(ROOT / "tests/configs/tiny.yaml"), str(workdir / "export.yaml"), *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=900)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("exportflow")
    return fabricated_study(work, MODELS + ["teacher"], "export.yaml", CONFIG)


@pytest.mark.workflow
def test_table4_builds_every_onnx_file_and_the_table(workdir):
    r = snakemake(workdir, "--cores", "2", "table4", "onnx", "--allowed-rules", *EXPORT_RULES)
    assert r.returncode == 0, r.stderr[-4000:]
    onnx_dir = workdir / "results/onnx"
    for name in MODELS:
        for suffix in (".onnx", ".json", ".int8.onnx", ".int8.json"):
            assert (onnx_dir / f"{name}{suffix}").is_file(), f"{name}{suffix}"
        report = json.loads((onnx_dir / f"{name}.json").read_text())
        assert report["parity"]["passed"] and report["parity"]["n_faces"] == 18
        assert report["onnx"]["opset"] == 17 and report["metadata"]["face_size"] == 24
        latency = json.loads((workdir / "results/latency" / f"{name}.json").read_text())
        assert latency["threads"] == [1, 2] and latency["runs"] == 3
        # Timed at the trained size and at the deployment size of the tiny config (64 px).
        assert latency["input_sizes"] == [64, 16]
        engines = {r["engine"] for r in latency["records"] if r["threads"] == 2}
        assert engines >= {"ort_fp32", "ort_int8", "torch_eager"}
    table = pl.read_csv(workdir / "results/tables/table4_onnx.csv")
    assert table["model"].unique(maintain_order=True).to_list() == MODELS
    assert {"ort_fp32_median_ms", "ort_int8_median_ms", "torch_eager_median_ms", "input_size", "threads"} <= set(table.columns)
    assert (workdir / "results/tables/table4_onnx.md").read_text().startswith("# Table 4")
    # The log of each rule is where the workflow said it would be.
    assert (workdir / "logs/latency/S0.log").is_file()


@pytest.mark.workflow
def test_predict_cli_scores_an_image_with_the_exported_model(workdir, tmp_path):
    model = workdir / "results/onnx/S0.onnx"
    if not model.is_file():
        snakemake(workdir, "--cores", "2", "results/onnx/S0.onnx", "--allowed-rules", *EXPORT_RULES)
    make_tree(tmp_path, subjects=1, per_class=(1, 0))
    image = next(tmp_path.rglob("*.jpg"))
    r = subprocess.run(
        [sys.executable, "-m", "fasflow", "predict", str(image), "--model", str(model), "--json",
         "--box", str(image.with_name(image.stem + "_BB.txt"))],
        capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    (result,) = json.loads(r.stdout)["predictions"]
    assert result["label"] in ("live", "spoof") and result["box_source"] == "bb_file"


@pytest.mark.workflow
def test_real_pipeline_model_exports_and_predict_matches_the_face_cache(tiny_workflow):
    """A model trained by the workflow, exported by it, and `fasflow predict` on a dataset image
    giving exactly the tensor (and score) that evaluation computes from the face cache."""
    tiny_workflow.run("results/onnx/S0.onnx", "results/onnx/S0.int8.json")
    report = json.loads(tiny_workflow.path("results/onnx/S0.json").read_text())
    assert report["parity"]["passed"]
    test = pl.read_parquet(tiny_workflow.path("results/faces/test.parquet"))  # the rows of the cache
    faces = np.load(tiny_workflow.path("results/faces/test.npy"), allow_pickle=False)
    row = next(i for i, status in enumerate(test["box_status"].to_list()) if status == "ok")
    image = tiny_workflow.path("resources/tiny/celeba_spoof") / test["path"][row]
    predictor = Predictor(tiny_workflow.path("results/onnx/S0.onnx"))
    picture = read_image(image)
    box = read_box_file(image.with_name(image.stem + "_BB.txt"), picture.width, picture.height)
    expected = eval_transform(report["input_size"])(np.array(faces[row])).unsqueeze(0)
    assert torch.equal(torch.from_numpy(predictor.preprocess(picture, box)), expected)
    r = subprocess.run(
        [sys.executable, "-m", "fasflow", "predict", str(image), "--model", str(predictor.model_path), "--json", "--celeba-box"],
        capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    score = json.loads(r.stdout)["predictions"][0]["spoof_probability"]
    session = open_session(predictor.model_path)
    assert score == pytest.approx(float(softmax_spoof(session.run(None, {"input": expected.numpy()})[0])[0]), abs=1e-6)

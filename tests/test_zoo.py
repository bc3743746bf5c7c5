"""The student zoo (config, Pareto front, table) and both beyond-the-paper targets, `zoo` and `cross_dataset`, on tiny data."""

import json
import math

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import Workflow, tiny_config

from fasflow.config import check_architectures, check_config, zoo_models, zoo_run_settings
from fasflow.errors import ConfigError
from fasflow.zoo import pareto_front, write_zoo, zoo_rows


def test_zoo_models_and_their_settings():
    config = tiny_config({"students": {"zoo_a": "lcnet_050"}, "zoo": {"distilled_recipe": "S2"}})
    check_config(config)
    assert zoo_models(config) == {
        "zoo_a": {"student": "zoo_a", "arch": "lcnet_050", "recipe": "S0"},
        "zoo_a_S2": {"student": "zoo_a", "arch": "lcnet_050", "recipe": "S2"},
    }
    settings = zoo_run_settings(config, "zoo_a_S2")
    assert settings["arch"] == "lcnet_050" and settings["hyperparameters"] == config["scenarios"]["S2"]
    assert settings["train"] == config["train"]


@pytest.mark.parametrize(
    "over, message",
    [
        ({"students": {"S1": "lcnet_050"}}, "already a scenario"),
        ({"students": {"teacher": "lcnet_050"}}, "already a scenario or the teacher"),
        ({"zoo": {"recipe": "S1"}}, "zoo.recipe: scenario 'S1' is tuned"),
        ({"zoo": {"recipe": "S2"}}, "zoo.recipe: scenario 'S2' must not be distilled"),
        ({"zoo": {"distilled_recipe": "S0"}}, "zoo.distilled_recipe: scenario 'S0' must be distilled"),
        ({"zoo": {"recipe": "S9"}}, "zoo.recipe: 'S9' is not a scenario"),
    ],
)
def test_zoo_config_errors_name_the_key(over, message):
    with pytest.raises(ConfigError, match=message):
        check_config(tiny_config(over))


def test_student_architectures_are_checked_against_timm():
    config = tiny_config({"students": {"zoo_x": "mobilenetv3_larg_100"}})
    with pytest.raises(ConfigError, match="students.zoo_x: 'mobilenetv3_larg_100' is not a timm architecture; nearest: mobilenetv3_large_100"):
        check_architectures(config, known=["mobilenetv2_100", "efficientnet_b0", "mobilenetv3_large_100"])


def test_pareto_front_by_hand():
    # (latency, ACER): b is dominated by a (faster and better); d ties a on latency but is worse; e has no latency.
    points = [(1.0, 0.10), (2.0, 0.20), (3.0, 0.05), (1.0, 0.30), (math.nan, 0.0)]
    assert pareto_front(points) == [True, False, True, False, False]
    assert pareto_front([(1.0, 0.1), (1.0, 0.1)]) == [True, True]  # equal points do not dominate each other


def fake_reports(tmp_path, name, acer, params, fp32_ms, int8_ms, int8_acer, fallback=False):
    """Metrics, export, INT8 and latency reports in the shape the workflow writes them."""
    paths = {}
    metrics = {"accuracy": 1 - acer, "f1": 0.9, "roc_auc": 0.95, "apcer": acer, "bpcer": acer, "acer": acer,
               "ci": {"level": 0.95, "n_resamples": 200, "intervals": {"acer": [acer - 0.01, acer + 0.02], "accuracy": [0.5, 0.99]}}}
    export = {"arch": name, "input_size": 16, "onnx": {"parameters": params, "size_mb": params * 4e-6, "size_mib": params * 4 / 2**20, "opset": 17},
              "parity": {"max_abs_logit_diff": 1e-6, "label_mismatches": 0}}
    # 224 px first (the deployment size), then the trained size; 1 and 2 threads; a slower size and thread count
    # must not be the one the zoo reads.
    records = [
        {"engine": engine, "input_size": size, "threads": threads, "batch": batch, "median_ms": ms * (1 if size == 224 else 0.1) * (1 if threads == 1 else 0.6),
         "p95_ms": ms, "mean_ms": ms, "images_per_s": 1.0}
        for engine, ms in (("ort_fp32", fp32_ms), ("ort_int8", int8_ms), ("torch_eager", 10 * fp32_ms))
        for size in (224, 16) for threads in (1, 2) for batch in (1, 8)
    ]
    latency = {"trained_input_size": 16, "input_sizes": [224, 16], "threads": [1, 2], "throughput_batch": 8, "records": records,
               "ratios": [], "system": {"cpu_model": "test CPU", "onnxruntime": "1.x", "openvino": None}}
    int8 = {"onnx": {"size_mib": params / 2**20}, "fallback": fallback, "recipe": {"calibration": "minmax", "exclusion": "none"},
            "test": {"fp32": {"acer": acer}, "int8": {"acer": int8_acer}, "label_agreement": 0.99}}
    for kind, content in (("metrics", metrics), ("export", export), ("latency", latency), ("int8", int8)):
        paths[kind] = tmp_path / f"{name}.{kind}.json"
        paths[kind].write_text(json.dumps(content))
    return paths


def test_zoo_table_rows_and_files(tmp_path):
    from fasflow.tables import table4_rows

    models = ["S0", "zoo_fast", "zoo_slow"]
    reports = {
        "S0": fake_reports(tmp_path, "S0", 0.20, 2_230_000, 3.0, 1.5, 0.22),
        "zoo_fast": fake_reports(tmp_path, "zoo_fast", 0.30, 500_000, 1.0, 1.2, 0.31),
        "zoo_slow": fake_reports(tmp_path, "zoo_slow", 0.25, 4_000_000, 5.0, 4.0, 0.25, fallback=True),
    }
    info = {"S0": {"arch": "mobilenetv2_100", "recipe": "S0", "reference": True},
            "zoo_fast": {"arch": "lcnet_050", "recipe": "S0"}, "zoo_slow": {"arch": "ghostnet_100", "recipe": "S0"}}
    paths = {kind: {m: reports[m][kind] for m in models} for kind in ("metrics", "export", "latency", "int8")}
    csv, md, png = tmp_path / "zoo.csv", tmp_path / "zoo.md", tmp_path / "zoo.png"
    write_zoo(models, info, paths["metrics"], paths["export"], paths["latency"], paths["int8"], csv, md, [png])
    table = pl.read_csv(csv)
    assert table["model"].to_list() == models
    assert table["parameters_m"].to_list() == pytest.approx([2.23, 0.5, 4.0])
    # Latency of the deployment size at one thread, as Table 4 reports it.
    assert table["fp32_median_ms"].to_list() == pytest.approx([3.0, 1.0, 5.0]) and set(table["latency_input_size"]) == {224}
    # zoo_slow is slower and worse than S0 (off both fronts); zoo_fast is faster but worse (on both).
    assert table["pareto_fp32"].to_list() == [True, True, False]
    assert table["pareto_int8"].to_list() == [True, True, False]
    assert table["acer_ci_hi"].to_list() == pytest.approx([0.22, 0.32, 0.27])
    text = md.read_text()
    assert "| S0 (reference) | mobilenetv2_100 | S0 | 2.23 |" in text and "0.2000 [0.1900, 0.2200]" in text
    assert "| 3.00 / 1.50 |" in text and "0.2500 (FP32 fallback)" in text and "ORT FP32 / INT8 ms (224 px, 1 thread)" in text
    assert "95% subject-level bootstrap intervals (200 resamples)" in text and png.stat().st_size > 0
    # Without INT8 reports (export.int8.enabled false) there is no INT8 front.
    metrics = {m: json.loads(paths["metrics"][m].read_text()) for m in models}
    rows = zoo_rows(models, info, metrics, table4_rows(models, paths["export"], paths["latency"], None))
    assert [r["pareto_int8"] for r in rows] == [False] * 3 and all(math.isnan(r["int8_acer"]) for r in rows)


# The tiny model for the workflow test: timm's test network trains ~6x faster than MobileNetV2
# and exports and quantises like the real zoo (benchmarks/bench_zoo.py). The cross-dataset table
# scores S0 and the zoo model only (the default, every trained model, is checked on the DAG).
BEYOND_CONFIG = {
    "external_tests": {
        "shifted": {
            "format": "folder", "root": "resources/external/shifted", "subject_level": True, "type_level": True,
            "boxes": "file", "box_units": "pixels", "synthetic": {"enabled": True, "n_subjects": 4, "images_per_subject": 6, "seed": 31},
        }
    },
    "students": {"zoo_test": "test_efficientnet"},
}


@pytest.mark.workflow
def test_zoo_and_cross_dataset_targets_through_snakemake(tiny_workflow, tmp_path):
    every_model = tmp_path / "beyond.yaml"
    every_model.write_text(yaml.safe_dump(BEYOND_CONFIG))
    # By default every trained model scores every external set: the teacher, S0-S3 and the zoo.
    plan = Workflow(tiny_workflow.workdir, [every_model]).run("cross_dataset", "--dry-run").stdout
    for name in ("teacher", "S0", "S1", "S2", "S3", "zoo_test"):
        assert f"results/external/shifted/predictions/{name}.parquet" in plan
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text(yaml.safe_dump({**BEYOND_CONFIG, "cross_dataset": {"models": ["S0", "zoo_test"]}}))
    wf = Workflow(tiny_workflow.workdir, [chosen])
    wf.run("zoo", "cross_dataset")

    # The zoo model was trained with S0's recipe, exported, quantised, timed and tabled next to S0.
    summary = json.loads(wf.path("results/models/zoo_test/summary.json").read_text())
    assert summary["arch"] == "test_efficientnet" and summary["name"] == "zoo_test"
    s0 = json.loads(wf.path("results/models/S0/summary.json").read_text())
    assert summary["hyperparameters"] == s0["hyperparameters"] and not summary["config"]["distill"]
    for suffix in (".onnx", ".json", ".int8.onnx", ".int8.json"):
        assert wf.path(f"results/onnx/zoo_test{suffix}").stat().st_size > 0
    zoo = pl.read_csv(wf.path("results/tables/zoo.csv"))
    assert zoo["model"].to_list() == ["S0", "zoo_test"] and zoo["arch"].to_list() == ["mobilenetv2_100", "test_efficientnet"]
    assert zoo["reference"].to_list() == [True, False] and zoo["fp32_median_ms"].min() > 0
    metrics = json.loads(wf.path("results/metrics/zoo_test.json").read_text())
    assert zoo.row(1, named=True)["acer"] == pytest.approx(metrics["acer"], abs=1e-6)
    assert wf.path("results/figures/zoo_pareto.png").stat().st_size > 0

    # The generated external set was ingested with its report, cached and scored by the chosen models.
    report = json.loads(wf.path("results/external/shifted/ingest_report.json").read_text())
    assert report["usable"] == 24 and report["subjects_known"] and report["skipped_or_flagged"] == {}
    cross = pl.read_csv(wf.path("results/tables/cross_dataset.csv"))
    assert cross.filter(pl.col("threshold_rule") == "val_eer")["model"].to_list() == ["S0", "zoo_test"]
    assert set(cross["ci_unit"]) == {"subject"} and set(cross["n_images"]) == {24}
    # The deployable threshold is S0's CelebA-Spoof validation EER threshold, applied to the external scores.
    from fasflow.metrics import eer

    val = pl.read_parquet(wf.path("results/predictions/val/S0.parquet"))
    row = cross.filter((pl.col("model") == "S0") & (pl.col("threshold_rule") == "val_eer")).row(0, named=True)
    assert row["threshold"] == pytest.approx(eer(val["label"].to_numpy(), val["score"].to_numpy())[1], abs=1e-6)
    external = pl.read_parquet(wf.path("results/external/shifted/predictions/S0.parquet"))
    scores, labels = external["score"].to_numpy(), external["label"].to_numpy()
    assert row["bpcer"] == pytest.approx(np.mean(scores[labels == 0] >= row["threshold"]), abs=1e-6)
    assert wf.path("results/tables/cross_dataset.md").read_text().startswith("# Cross-dataset test")
    assert wf.path("results/figures/cross_dataset_roc.pdf").stat().st_size > 0


@pytest.mark.workflow
def test_demo_extended_dag_keeps_zoo_training_away_from_the_test_split(tmp_path):
    """The extended demo's zoo and cross-dataset jobs on the real DAG: training never depends on the test split."""
    import shutil
    import subprocess
    import sys

    from conftest import ROOT
    from test_isolation import find_test_split_leaks, parse_dry_run

    shutil.copytree(ROOT / "config", tmp_path / "config")
    cmd = [
        sys.executable, "-m", "snakemake", "zoo", "cross_dataset", "-n", "--forceall", "--cores", "2", "--nolock",
        "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", str(ROOT / "config/demo.yaml"), str(ROOT / "config/demo_extended.yaml"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    jobs = parse_dry_run(r.stdout + r.stderr)
    rules = {job.rule for job in jobs}
    assert {"train_zoo_student", "synthesize_external", "ingest_external", "external_face_cache", "predict_external"} <= rules
    zoo_training = [job for job in jobs if job.rule == "train_zoo_student"]
    assert len(zoo_training) == 1 and all(job.outputs for job in zoo_training)
    assert find_test_split_leaks(jobs) == []
    # One architecture besides MobileNetV2, and every trained model scores the shifted set.
    scored = {o for job in jobs if job.rule == "predict_external" for o in job.outputs}
    assert len(scored) == 5 + 1

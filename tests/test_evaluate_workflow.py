"""The evaluation rules end to end through Snakemake, on fabricated trained models.

Only the evaluation rules are allowed to run (--allowed-rules), so the fabricated models,
face caches and splits stand in for the training part of the workflow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from eval_fakes import fabricated_study

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
EVAL_RULES = [
    "predict", "metrics", "table_configuration", "table_classification", "table_antispoofing",
    "table_apcer_per_type", "table_comparisons", "table_protocol", "figure_confusion_matrices", "figure_comparison", "figure_apcer_per_type",
    "figure_curves", "figure_training", "tables", "table1", "table2", "table3", "figures",
]
MODELS = ["teacher", "S0", "S1", "S2", "S3"]
CONFIG = """
evaluate:
  bootstrap_n: 50
"""


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        *SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(ROOT / "tests/configs/tiny.yaml"), str(workdir / "eval.yaml"), *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=900)


def job_stats(text: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake (dry) run: rule -> job count."""
    lines = text[text.index("Job stats:") :].splitlines()[3:]
    jobs = {}
    for line in lines:
        parts = line.split()
        if not parts or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("evalflow")
    return fabricated_study(work, MODELS, "eval.yaml", CONFIG)


@pytest.mark.workflow
def test_dry_run_of_table3_needs_only_table3(workdir):
    r = snakemake(workdir, "-n", "table3", "--allowed-rules", *EVAL_RULES)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = job_stats(r.stdout + r.stderr)
    assert jobs == {"predict": 5, "metrics": 5, "table_antispoofing": 1, "table3": 1}


@pytest.mark.workflow
def test_tables_figures_and_report(workdir):
    r = snakemake(workdir, "--cores", "1", "tables", "figures", "--allowed-rules", *EVAL_RULES)
    assert r.returncode == 0, r.stderr[-4000:]
    tables = workdir / "results/tables"
    for stem in ("table1_configuration", "table2_classification", "table3_antispoofing", "apcer_per_type"):
        assert (tables / f"{stem}.csv").is_file() and (tables / f"{stem}.md").is_file(), stem
    t2 = pl.read_csv(tables / "table2_classification.csv")
    assert t2["Scenario"].to_list() == ["S0", "S1", "S2", "S3", "teacher"]
    assert "F1-score_ci_lo" in t2.columns
    t1 = pl.read_csv(tables / "table1_configuration.csv")
    assert t1["Alpha"].to_list()[2] == 0.6
    metrics = json.loads((workdir / "results/metrics/S0.json").read_text())
    assert metrics["ci"]["n_resamples"] == 50 and "hter" in metrics
    preds = pl.read_parquet(workdir / "results/predictions/S0.parquet")
    assert preds.columns == ["path", "subject_id", "label", "spoof_type", "score", "pred", "logit"]
    assert preds.height == 18
    assert pl.read_parquet(workdir / "results/predictions/val/S0.parquet").height == 12
    figures = workdir / "results/figures"
    for stem in ("figure1_confusion_matrices", "figure2_comparison", "apcer_per_type_heatmap", "roc_curves", "det_curves"):
        assert (figures / f"{stem}.png").is_file() and (figures / f"{stem}.pdf").is_file(), stem
    assert len(list((figures / "training").glob("*.png"))) == len(MODELS)

    r = snakemake(workdir, "--report", "report.html", "tables", "figures")
    assert r.returncode == 0, r.stderr[-3000:]
    html = (workdir / "report.html").read_text(errors="replace")
    assert "table3_antispoofing.csv" in html and "figure2_comparison.png" in html

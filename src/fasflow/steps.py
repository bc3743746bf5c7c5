"""The workflow's steps: one `run_<rule>` function per Snakemake rule, and how a rule calls it.

Every rule's script is two lines: `run_rule(steps.run_<rule>, snakemake)`. `run_rule` calls the
step with the rule's named inputs, outputs and params as keyword arguments (plus `threads`
when the step takes it), so the names in a rule are the names of its step's arguments, and
the declared paths are the only paths a step touches. Steps hold no science: they read files,
call the module that owns the concept, and write the declared outputs.

Reading order follows the data: dataset -> splits -> faces -> training -> tuning ->
prediction and metrics -> tables and figures -> export; then the studies beyond the paper.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import polars as pl

from . import io
from .errors import DataError, FasflowError
from .runlog import get_logger, run_logged


def run_rule(step: Callable, smk) -> None:
    """Run `step` for the Snakemake job `smk` (the `snakemake` object of a rule's script)."""
    from .seeding import set_threads

    def main() -> None:
        kwargs: dict = {}
        for section, values in (("input", smk.input), ("output", smk.output), ("params", smk.params)):
            named = dict(values.items())
            if sum(len(v) if isinstance(v, list) else 1 for v in named.values()) != len(values) and section != "params":
                raise FasflowError(f"rule {smk.rule}: every {section} must be named (the names are the step's arguments)")
            for name, value in named.items():
                if name in kwargs:
                    raise FasflowError(f"rule {smk.rule}: {name!r} is both an input/output/param name")
                kwargs[name] = _plain(value)
        if "threads" in inspect.signature(step).parameters:
            kwargs["threads"] = smk.threads
        set_threads(smk.threads)
        get_logger().info("rule %s: %s", smk.rule, step.__name__)
        step(**kwargs)

    run_logged(main, smk.log[0] if smk.log else None)


def _plain(value):
    """Snakemake's path and list types as plain str and list (what the package expects)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# dataset


def run_synthesize_dataset(labels: Sequence[str], dataset: Mapping, threads: int = 1) -> None:
    """The synthetic CelebA-Spoof-format dataset at dataset.root (demo and tests)."""
    from .synth import generate

    synthetic = dataset["synthetic"]
    counts = generate(
        dataset["root"], synthetic["n_subjects"], synthetic["images_per_subject"], synthetic["seed"],
        identity_shortcut=synthetic["identity_shortcut"], distinct_cue=synthetic["distinct_cue"], workers=threads,
    )
    missing = [p for p in labels if not Path(p).is_file()]
    if missing:
        raise DataError(f"the synthetic dataset has no label file {missing[0]} (dataset.protocol)")
    get_logger().info("synthetic dataset written: %s", counts)


def run_ingest(labels: Sequence[str], images: str, report: str, dataset: Mapping, policies: Mapping, threads: int = 1) -> dict:
    """Label files + box files under dataset.root -> the table of usable images and the problem report."""
    from .ingest import ingest

    root = Path(dataset["root"])
    relative = [_relative_to(p, root, "dataset.root") for p in labels]
    log = get_logger()
    log.info("ingest: reading %s under %s", ", ".join(relative), root)
    table, counts = ingest(root, relative, policies, check_files=dataset["check_files"], threads=threads)
    io.write_parquet(images, table)
    io.write_json(report, counts)
    log.info("ingest: %d listed, %d usable; flagged %s", counts["listed"], counts["usable"], counts["skipped_or_flagged"])
    return counts


def _relative_to(path: str, root: Path, key: str) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        raise DataError(f"{path} is not inside dataset.root ({root}); see {key}") from None


def run_split(images: str, train: str, val: str, test: str, report: str, protocol: str, subset: Mapping, split: Mapping) -> dict:
    """The study's subset, split by subject into train/val/test manifests and their report."""
    from .splits import make_splits

    splits, summary = make_splits(pl.read_parquet(images), protocol, subset, split)
    for name, path in (("train", train), ("val", val), ("test", test)):
        io.write_parquet(path, splits[name])
    io.write_json(report, summary)
    log = get_logger()
    for name in ("train", "val", "test"):
        s = summary["splits"][name]
        log.info(
            "split %s: %d images, %d subjects (median %s images each), %d live, %d spoof",
            name, s["images"], s["subjects"], s["images_per_subject"]["median"], s["live"], s["spoof"],
        )
    if "protocol" in summary:
        p = summary["protocol"]
        log.info("protocol %s: %d subjects in both label files; their %d train-file images left out", protocol, p["crossing_subjects"], p["crossing_images_removed"])
    return summary


def run_face_cache(
    manifest: str, faces: str, faces_manifest: str, report: str, root: str, margin: float, size: int, policies: Mapping, threads: int = 1
) -> dict:
    """The faces of one split: a uint8 array written in chunks (bounded memory), the manifest of the
    rows it holds (images that cannot be decoded are handled by the ingest policies) and a report."""
    from .faces import write_face_cache

    return write_face_cache(manifest, root, margin, size, threads, dict(policies), faces, faces_manifest, report)


# ---------------------------------------------------------------------------
# training and tuning


def load_split(faces: str, manifest: str, exclude_spoof_type: str | None = None, require_excluded: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Faces (memory-mapped) and labels of a split, optionally without one spoof type.

    `require_excluded`: the split must hold the left-out type (leaving out a type training
    never had would measure nothing).
    """
    from . import SPOOF_TYPE_CODES
    from .data import load_faces

    array, table = load_faces(faces, manifest)
    labels = table["label"].to_numpy().astype(np.int64)
    if exclude_spoof_type is None:
        return array, labels
    keep = table["spoof_type"].to_numpy() != SPOOF_TYPE_CODES[exclude_spoof_type]
    if require_excluded and keep.all():
        raise DataError(f"{manifest}: no image of spoof type {exclude_spoof_type} to leave out")
    return np.ascontiguousarray(array[keep]), labels[keep]


def load_teacher(weights: str | None, summary: str | None):
    """The frozen teacher of a distilled run (None when the run is not distilled)."""
    from .models import frozen, load_trained

    if weights is None:
        return None
    return frozen(load_trained(weights, summary)[0])


def run_train(
    name: str,
    settings: Mapping,
    weights: str,
    history: str,
    summary: str,
    train_faces: str,
    train_manifest: str,
    val_faces: str,
    val_manifest: str,
    pretrained: str | None = None,
    teacher_weights: str | None = None,
    teacher_summary: str | None = None,
    best_params: str | None = None,
    seed: int | None = None,
    exclude_spoof_type: str | None = None,
    variant: str | None = None,
) -> dict:
    """Train one model (the teacher, a scenario, or a variant of one) and write its three files.

    `settings` is fasflow.config.run_settings; `best_params` the Optuna result of a tuned
    scenario; `seed` another training seed (replicates); `exclude_spoof_type` a type left out of
    train and validation (leave-one-attack-type-out); `variant` names the variant in summary.json.
    """
    from .train import train_config, train_model

    tuned = io.read_json(best_params)["params"] if best_params else None
    cfg = train_config(name, settings["arch"], settings["train"], settings["hyperparameters"], pretrained, tuned, seed)
    if cfg.distill and teacher_weights is None:
        raise DataError(f"{name}: a distilled run needs the teacher's weights")
    train = load_split(train_faces, train_manifest, exclude_spoof_type, require_excluded=True)
    val = load_split(val_faces, val_manifest, exclude_spoof_type)
    outputs = {"weights": weights, "history": history, "summary": summary}
    result = train_model(cfg, *train, *val, outputs, teacher=load_teacher(teacher_weights, teacher_summary))
    if variant is not None:
        # A model file explains itself: which variant it is and what it was trained on.
        info = io.read_json(summary)
        info["variant"] = {
            "name": variant,
            "seed": cfg.seed,
            "excluded_spoof_type": exclude_spoof_type,
            "train_images": int(len(train[1])),
            "val_images": int(len(val[1])),
        }
        io.write_json(summary, info)
    return result


def run_tune_worker(
    scenario: str,
    worker: int,
    settings: Mapping,
    journal: str,
    done: str,
    train_faces: str,
    train_manifest: str,
    val_faces: str,
    val_manifest: str,
    pretrained: str | None = None,
    teacher_weights: str | None = None,
    teacher_summary: str | None = None,
) -> dict:
    """One worker of a scenario's Optuna study: trials until the study has tune.n_trials."""
    from .tune import objective
    from .tune_journal import run_worker

    train = load_split(train_faces, train_manifest)
    val = load_split(val_faces, val_manifest)
    teacher = load_teacher(teacher_weights, teacher_summary)
    # Face caches are large: the manifests they mirror row by row stand in for them.
    fingerprinted = {"train_manifest": train_manifest, "val_manifest": val_manifest}
    fingerprinted.update({k: v for k, v in (("pretrained", pretrained), ("teacher", teacher_weights)) if v})
    result = run_worker(
        settings, scenario, int(worker), journal,
        lambda trial: objective(trial, settings, scenario, train, val, teacher, pretrained),
        input_files=fingerprinted,
    )
    io.write_json(done, result)
    return result


def run_tune_study(scenario: str, settings: Mapping, journal: str, workers: Sequence[str], best_params: str, trials: str, history: str, importance: str) -> dict:
    """Best parameters (read by the final training), trials table and figures of a finished study."""
    from .tune import summarize

    return summarize(settings, scenario, journal, {"best_params": best_params, "trials": trials, "history": history, "importance": importance})


def run_fetch_pretrained(arch: str, weights: str) -> None:
    """ImageNet weights of a timm architecture, downloaded once where the workflow is launched."""
    from .models import fetch_pretrained

    get_logger().info("fetching ImageNet weights of %s with timm", arch)
    fetch_pretrained(arch, weights)


# ---------------------------------------------------------------------------
# prediction and metrics


def run_predict(
    weights: str,
    summary: str,
    val_faces: str,
    val_manifest: str,
    test_faces: str,
    test_manifest: str,
    val: str,
    test: str,
    batch_size: int,
    device: str,
) -> None:
    """P(spoof) of one trained model on the validation split (thresholds) and the test split."""
    from .data import load_faces
    from .models import load_trained
    from .predict import predict_split

    log = get_logger()
    model, info = load_trained(weights, summary)
    log.info("model %s (%s, input %d) on %s", info["name"], info["arch"], info["input_size"], device)
    for split, faces_path, manifest_path, out in (("val", val_faces, val_manifest, val), ("test", test_faces, test_manifest, test)):
        try:
            faces, manifest = load_faces(faces_path, manifest_path)
        except ValueError as exc:
            raise DataError(str(exc)) from exc
        predictions = predict_split(model, faces, manifest, int(info["input_size"]), batch_size, device)
        io.write_parquet(out, predictions)
        log.info("%s: %d images, %d predicted spoof -> %s", split, predictions.height, int(predictions["pred"].sum()), out)


def run_metrics(test: str, val: str, metrics: str, bootstrap_n: int, seed: int, ci_level: float, bpcer_at_apcer: Sequence[float]) -> dict:
    """Every metric of one model on test at the paper's threshold and at validation-fixed ones, with subject-bootstrap CIs."""
    from .metrics import DECISION_THRESHOLD, evaluate, read_predictions

    result = evaluate(
        read_predictions(test), read_predictions(val), threshold=DECISION_THRESHOLD, bpcer_at_apcer=bpcer_at_apcer,
        n_resamples=bootstrap_n, seed=seed, level=ci_level, test_source=test, val_source=val,
    )
    io.write_json(metrics, result)
    shown = {k: result[k] for k in ("accuracy", "f1", "apcer", "bpcer", "acer")} | {"tpr@fpr=1%": result["tpr_at_fpr"]["0.01"]}
    get_logger().info("%s: %s", test, "  ".join(f"{k} {float('nan') if v is None else v:.4f}" for k, v in shown.items()))
    return result


# ---------------------------------------------------------------------------
# tables and figures (inputs are lists in the order of `models`)


def run_table1_configuration(
    summaries: Sequence[str], best_params: Sequence[str], models: Sequence[str], scenarios: Mapping, tune: Mapping, csv: str, md: str
) -> None:
    """Table 1: the hyperparameters each scenario was trained with (`best_params`: of the tuned ones, in order)."""
    from .tables import write_table1

    tuned = [m for m in models if scenarios[m]["tune"]]
    write_table1(dict(zip(models, summaries)), scenarios, dict(zip(tuned, best_params)), tune, csv, md)


def run_table2_classification(
    metrics: Sequence[str], predictions: Sequence[str], models: Sequence[str], reference: str,
    bootstrap_n: int, seed: int, ci_level: float, csv: str, md: str,
) -> None:
    """Table 2: accuracy, precision, recall, F1, ROC-AUC with CIs and paired comparisons with the reference."""
    from .tables import write_table2

    write_table2(dict(zip(models, metrics)), dict(zip(models, predictions)), reference, bootstrap_n, seed, ci_level, csv, md)


def run_table_comparisons(
    predictions: Sequence[str], models: Sequence[str], reference: str, bootstrap_n: int, seed: int, ci_level: float, csv: str, md: str
) -> None:
    """Every model against the reference: paired subject-bootstrap differences with Holm-adjusted p-values."""
    from .tables import write_comparisons

    write_comparisons(dict(zip(models, predictions)), reference, bootstrap_n, seed, ci_level, csv, md)


def run_table_protocol(metrics: Sequence[str], models: Sequence[str], protocol: str, csv: str, md: str) -> None:
    """The CelebA-Spoof benchmark's metrics (TPR@FPR next to APCER/BPCER/ACER/AUC/EER) for every model."""
    from .tables import write_protocol_table

    write_protocol_table(dict(zip(models, metrics)), protocol, csv, md)


def run_table3_antispoofing(metrics: Sequence[str], models: Sequence[str], bpcer_at_apcer: Sequence[float], csv: str, md: str) -> None:
    """Table 3: ISO/IEC 30107-3 metrics with CIs."""
    from .tables import write_table3

    write_table3(dict(zip(models, metrics)), bpcer_at_apcer, csv, md)


def run_apcer_per_type(metrics: Sequence[str], models: Sequence[str], csv: str, md: str) -> None:
    """APCER of each spoof type (PAI species) per model."""
    from .tables import write_apcer_per_type

    write_apcer_per_type(dict(zip(models, metrics)), csv, md)


def _metrics_of(models: Sequence[str], paths: Sequence[str]) -> dict:
    from .tables import load_metrics

    return load_metrics(dict(zip(models, paths)))


def run_figure_confusion_matrices(metrics: Sequence[str], models: Sequence[str], png: str, pdf: str) -> None:
    """Figure 1: confusion matrices of every model."""
    from .figures import confusion_matrices

    confusion_matrices(_metrics_of(models, metrics), [png, pdf])


def run_figure_comparison(metrics: Sequence[str], models: Sequence[str], png: str, pdf: str) -> None:
    """Figure 2: F1 and APCER/BPCER/ACER per model with CI error bars."""
    from .figures import comparison_bars

    comparison_bars(_metrics_of(models, metrics), [png, pdf])


def run_figure_apcer_per_type(metrics: Sequence[str], models: Sequence[str], png: str, pdf: str) -> None:
    """Heat map of APCER per spoof type and model."""
    from .figures import apcer_heatmap

    apcer_heatmap(_metrics_of(models, metrics), [png, pdf])


def run_figure_curves(predictions: Sequence[str], models: Sequence[str], curve: str, png: str, pdf: str) -> None:
    """ROC or DET curves of every model on the test split."""
    from .figures import det_curves, roc_curves
    from .metrics import read_predictions

    draw = {"roc": roc_curves, "det": det_curves}[curve]
    draw({name: read_predictions(p) for name, p in zip(models, predictions)}, [png, pdf])


def run_figure_training(history: str, summary: str, name: str, png: str, pdf: str) -> None:
    """Training curves of one model."""
    from .figures import write_training_curves

    write_training_curves(history, summary, name, [png, pdf])


# ---------------------------------------------------------------------------
# export


def run_export_onnx(
    name: str, weights: str, summary: str, test_faces: str, onnx: str, report: str,
    face_margin: float, face_size: int, opset: int, fold_constants: bool, atol: float, rtol: float,
) -> dict:
    """One trained model as a self-describing ONNX file, parity-checked against PyTorch on the test faces."""
    from .export import export_trained

    return export_trained(name, weights, summary, onnx, report, test_faces, face_margin, face_size, opset, fold_constants, atol, rtol)


def run_quantize_onnx(
    name: str, fp32: str, val_faces: str, val_manifest: str, test_faces: str, test_manifest: str, onnx: str, report: str,
    calibration_size: int, calibration_methods: Sequence[str], per_channel: bool, reduce_range: bool, max_val_acer_change: float,
    openvino: bool, bootstrap_n: int, seed: int, ci_level: float, threads: int = 1,
) -> dict:
    """Static INT8 model whose recipe (calibration, FP32 exclusions or FP32 fallback) is chosen on
    validation faces, with its test metrics next to FP32's."""
    from .quantize import run_quantize

    return run_quantize(
        name, fp32, onnx, report, val_faces, val_manifest, test_faces, test_manifest,
        calibration_size=calibration_size, calibration_methods=list(calibration_methods), per_channel=per_channel,
        reduce_range=reduce_range, max_val_acer_change=max_val_acer_change, openvino=openvino,
        bootstrap_n=bootstrap_n, seed=seed, ci_level=ci_level, threads=threads,
    )


def run_latency(
    weights: str, summary: str, onnx: str, latency: str, warmup: int, runs: int, sizes: Sequence[int], engines: Sequence[str],
    throughput_batch: int, throughput_runs: int, threads: int = 1, int8: str | None = None,
) -> dict:
    """CPU latency of every engine and precision at the deployment size (224 px) and the trained size,
    at 1, 2 and all the job's cores, interleaved; batch-8 throughput."""
    from .latency import measure_trained

    return measure_trained(
        weights, summary, onnx, int8, latency, threads=threads, warmup=warmup, runs=runs, sizes=list(sizes), engines=list(engines),
        throughput_batch=throughput_batch, throughput_runs=throughput_runs,
    )


def run_table4_onnx(exports: Sequence[str], latencies: Sequence[str], models: Sequence[str], csv: str, md: str, int8: Sequence[str] = ()) -> None:
    """Table 4: parameters, ONNX size, CPU latency of every engine and precision, INT8 recipes and parity."""
    from .tables import table4_rows, write_table4

    rows = table4_rows(models, dict(zip(models, exports)), dict(zip(models, latencies)), dict(zip(models, int8)) if int8 else None)
    write_table4(rows, csv, md)


# ---------------------------------------------------------------------------
# beyond the paper


def run_leakage_split(
    train_manifest: str, val_manifest: str, test_manifest: str, train: str, val: str, test: str, report: str, fractions: Mapping, seed: int
) -> dict:
    """The main study's subset re-split at image level at random (identities shared): the leakage control."""
    from .splits import SPLITS, identity_overlap, split_images, split_report

    subset = pl.concat([pl.read_parquet(p) for p in (train_manifest, val_manifest, test_manifest)])
    splits = split_images(subset, dict(fractions), seed)
    summary = split_report(splits, dict(fractions))
    summary["method"] = "image-level random split, stratified by spoof type (identities shared)"
    summary["subject_overlap"] = identity_overlap(splits["train"], splits["test"])
    for name, path in zip(SPLITS, (train, val, test)):
        io.write_parquet(path, splits[name])
    io.write_json(report, summary)
    return summary


def run_table_replicates(
    metrics: Sequence[str], scenarios: Sequence[str], seeds: Sequence[int], reference: str, level: float,
    tuned: Sequence[str], retune: bool, csv: str, md: str, png: str, pdf: str,
) -> None:
    """Seed replicates: mean, SD and t-interval per metric, paired t-tests, spread figure."""
    from .extended import write_replicates

    # Inputs are listed scenario by scenario, seed by seed (replicate_metric_files in the workflow).
    files = iter(metrics)
    paths = {s: {seed: next(files) for seed in seeds} for s in scenarios}
    write_replicates(paths, reference, level, csv, md, [png, pdf], tuned=tuned, retune=retune)


def run_table_leakage(
    disjoint: Sequence[str], random: Sequence[str], disjoint_train: str, disjoint_test: str, random_train: str, random_test: str,
    scenarios: Sequence[str], training_seeds: Sequence[int], bootstrap_n: int, seed: int, level: float, csv: str, md: str,
) -> None:
    """Identity leakage: each scenario on the random vs the subject-disjoint split.

    `disjoint` and `random` hold one prediction file per scenario and training seed, scenario by scenario.
    """
    from .extended import write_leakage

    n = len(training_seeds)
    paths = {
        s: {"disjoint": disjoint[i * n:(i + 1) * n], "random": random[i * n:(i + 1) * n]} for i, s in enumerate(scenarios)
    }
    manifests = {"disjoint": (disjoint_train, disjoint_test), "random": (random_train, random_test)}
    write_leakage(paths, manifests, training_seeds, bootstrap_n, seed, level, csv, md)


def run_table_cross_attack(unseen: Sequence[str], seen: str, spoof_types: Sequence[str], bootstrap_n: int, seed: int, level: float, csv: str, md: str) -> None:
    """Leave-one-attack-type-out: APCER on each left-out type next to the main S0's."""
    from .extended import write_cross_attack

    write_cross_attack(dict(zip(spoof_types, unseen)), seen, bootstrap_n, seed, level, csv, md)


# ---------------------------------------------------------------------------
# beyond the paper, continued: external test sets and the student zoo


def run_synthesize_external(marker: str, root: str, synthetic: Mapping) -> dict:
    """A synthetic external set at `root` in another capture style; `marker` is its EXTERNAL.json, written last."""
    from .external import MARKER, write_shifted_set

    if Path(marker) != Path(root) / MARKER:
        raise FasflowError(f"synthesize_external: the marker must be {Path(root) / MARKER}, got {marker}")
    counts = write_shifted_set(root, synthetic["n_subjects"], synthetic["images_per_subject"], synthetic["seed"])
    get_logger().info("external set written at %s: %s", root, counts)
    return counts


def run_ingest_external(source: str, images: str, report: str, name: str, spec: Mapping, policies: Mapping, threads: int = 1) -> dict:
    """One external set (`source`: its folder, table or generated marker) -> its images table and problem report."""
    from .external import ingest_external

    table, counts = ingest_external(name, spec, policies, threads)
    io.write_parquet(images, table)
    io.write_json(report, counts)
    get_logger().info(
        "external set %s: %d found, %d usable (%d live, %d spoof); flagged %s", name, counts["listed"], counts["usable"],
        counts["live"], counts["spoof"], counts["skipped_or_flagged"] or "nothing",
    )
    return counts


def run_predict_external(weights: str, summary: str, faces: str, manifest: str, predictions: str, batch_size: int, device: str) -> None:
    """P(spoof) of one trained model on the face cache of one external set."""
    from .data import load_faces
    from .models import load_trained
    from .predict import predict_split

    model, info = load_trained(weights, summary)
    try:
        array, table = load_faces(faces, manifest)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    scores = predict_split(model, array, table, int(info["input_size"]), batch_size, device)
    io.write_parquet(predictions, scores)
    get_logger().info("%s on %s: %d images, %d predicted spoof", info["name"], faces, scores.height, int(scores["pred"].sum()))


def run_table_cross_dataset(
    external: Sequence[str], val: Sequence[str], test: Sequence[str], reports: Sequence[str], sets: Sequence[str], models: Sequence[str],
    bootstrap_n: int, seed: int, level: float, csv: str, md: str, png: str, pdf: str,
) -> None:
    """Cross-dataset table and ROC figure; `external` lists set by set, model by model (cross_dataset_inputs)."""
    from .external import write_cross_dataset

    files = iter(external)
    per_set = {s: {m: next(files) for m in models} for s in sets}
    write_cross_dataset(per_set, dict(zip(models, val)), dict(zip(models, test)), dict(zip(sets, reports)), bootstrap_n, seed, level, csv, md, [png, pdf])


def run_table_zoo(
    metrics: Sequence[str], exports: Sequence[str], latencies: Sequence[str], models: Sequence[str], archs: Sequence[str],
    recipes: Sequence[str], references: Sequence[str], csv: str, md: str, png: str, pdf: str, int8: Sequence[str] = (),
) -> None:
    """Zoo table and ACER-against-latency figure; inputs in the order of `models` (references first)."""
    from .zoo import write_zoo

    info = {m: {"arch": a, "recipe": r, "reference": m in references} for m, a, r in zip(models, archs, recipes)}
    write_zoo(
        models, info, dict(zip(models, metrics)), dict(zip(models, exports)), dict(zip(models, latencies)),
        dict(zip(models, int8)) if int8 else None, csv, md, [png, pdf],
    )

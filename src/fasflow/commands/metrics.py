"""`fasflow metrics PREDICTIONS.parquet [--val VAL.parquet]`: print every metric as JSON."""

from __future__ import annotations

from .. import DECISION_THRESHOLD  # fasflow.metrics' constant, without importing the metrics stack


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="metrics of a predictions file (spoof = positive class), printed as JSON",
        description=(
            "Accuracy, precision, recall, F1, ROC-AUC, APCER, BPCER, ACER (paper: pooled; "
            "acer_iso: from APCER_PAIS), APCER per spoof type at the decision threshold 0.5 "
            "(score >= threshold -> spoof), the EER (nearest ROC point) and the CelebA-Spoof "
            "benchmark's tpr_at_fpr (TPR = 1 - APCER at BPCER = 1%%, 0.5%%, 0.1%%, threshold on the "
            "same scores as the benchmark does). With --val, also the metrics at the validation-EER "
            "threshold (HTER), BPCER at fixed APCER and at fixed APCER_PAIS, and "
            "tpr_at_fpr_val_threshold, thresholds set on the validation scores; the test rates "
            "reached at those thresholds are reported."
        ),
    )
    parser.add_argument("predictions", help="test predictions parquet (path, subject_id, label, spoof_type, score)")
    parser.add_argument("--val", help="validation predictions parquet that fixes the thresholds")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DECISION_THRESHOLD,
        help=f"decision threshold for ad hoc analysis (default {DECISION_THRESHOLD:g}, the workflow's only one)",
    )
    parser.add_argument(
        "--bpcer-at-apcer",
        type=float,
        nargs="+",
        default=[0.01, 0.05, 0.10],
        metavar="RATE",
        help="APCER targets for BPCER at fixed APCER (default 0.01 0.05 0.10)",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=0, metavar="N", help="subject-level bootstrap resamples for 95%% CIs (default 0: none)"
    )
    parser.add_argument("--seed", type=int, default=2024, help="bootstrap seed (default 2024)")
    parser.add_argument("--ci-level", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import json

    from ..errors import ConfigError
    from ..metrics import evaluate, read_predictions

    if not 0 <= args.threshold <= 1:
        raise ConfigError(f"--threshold must lie in [0, 1] (scores are P(spoof)), got {args.threshold}")
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 (no intervals) or a positive number of resamples, got {args.bootstrap}")
    if not 0 < args.ci_level < 1:
        raise ConfigError(f"--ci-level must lie in (0, 1), got {args.ci_level}")
    if any(not 0 <= r < 1 for r in args.bpcer_at_apcer):
        raise ConfigError(f"--bpcer-at-apcer rates must lie in [0, 1), got {args.bpcer_at_apcer}")
    test = read_predictions(args.predictions)
    val = read_predictions(args.val) if args.val else None
    result = evaluate(
        test,
        val,
        threshold=args.threshold,
        bpcer_at_apcer=args.bpcer_at_apcer,
        n_resamples=args.bootstrap,
        seed=args.seed,
        level=args.ci_level,
        test_source=args.predictions,
        val_source=args.val or "",
    )
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0

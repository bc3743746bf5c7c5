"""`fasflow synth ROOT --subjects N --images-per-subject K --seed S`: write a synthetic dataset."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic dataset in CelebA-Spoof's format (for the demo and tests)",
        description=(
            "Write Data/{train,test}/<subject>/{live,spoof}/ images with _BB.txt boxes and "
            "metas/{intra_test,protocol1,protocol2/test_on_{high,middle,low}_quality_device}/{train,test}_label.json "
            "(the official protocols' folders) under ROOT, then print the counts as JSON. "
            "ROOT must be new, empty, or an earlier synthetic dataset (which is replaced). "
            "The same arguments give byte-identical files."
        ),
    )
    parser.add_argument("root", help="output folder (the dataset root)")
    parser.add_argument("--subjects", type=int, default=60, help="number of subjects (default 60)")
    parser.add_argument(
        "--images-per-subject", type=int, default=12, help="images per subject, about 1 live : 2 spoof (default 12)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--size", type=int, nargs=2, default=[64, 160], metavar=("MIN", "MAX"), help="image side range in px (default 64 160)"
    )
    parser.add_argument(
        "--defects",
        action="store_true",
        help="also break a few files the way real partial copies are broken (missing images, bad boxes, ...)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    import json

    from ..synth import generate

    counts = generate(
        args.root,
        args.subjects,
        args.images_per_subject,
        args.seed,
        size_range=tuple(args.size),
        defects=args.defects,
    )
    print(json.dumps(counts, indent=2, sort_keys=True))
    return 0

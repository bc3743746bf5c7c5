# Raw CelebA-Spoof metadata -> usable-image table -> subset -> subject-disjoint splits -> face cache.


if config["dataset"]["synthetic"]["enabled"]:

    rule synthesize_dataset:
        """Write the synthetic CelebA-Spoof-format dataset (demo and tests only)."""
        output:
            labels=label_files(),
        params:
            root=DATASET_ROOT,
            synthetic=config["dataset"]["synthetic"],
        log:
            "logs/synthesize_dataset.log",
        script:
            "../scripts/synthesize_dataset.py"


rule ingest:
    """Read the label files and box files into results/metadata/images.parquet, counting every problem."""
    input:
        labels=label_files(),
    output:
        images="results/metadata/images.parquet",
        report="results/metadata/ingest_report.json",
    params:
        root=DATASET_ROOT,
        label_files=config["dataset"]["label_files"],
        check_files=config["dataset"]["check_files"],
        policies=config["ingest"],
    threads: 4
    log:
        "logs/ingest.log",
    benchmark:
        "benchmarks/ingest.tsv"
    script:
        "../scripts/ingest.py"


rule split:
    """Choose the subset and split it by subject into train/val/test manifests."""
    input:
        images="results/metadata/images.parquet",
    output:
        train="results/splits/train.parquet",
        val="results/splits/val.parquet",
        test="results/splits/test.parquet",
        report="results/splits/split_report.json",
    params:
        subset=config["subset"],
        split=config["split"],
    log:
        "logs/split.log",
    script:
        "../scripts/split.py"


rule face_cache:
    """Crop, square and resize every face of one split into a lossless uint8 array."""
    input:
        manifest="results/splits/{split}.parquet",
    output:
        faces="results/faces/{split}.npy",
    params:
        root=DATASET_ROOT,
        faces=config["faces"],
    wildcard_constraints:
        split="train|val|test",
    threads: 4
    log:
        "logs/face_cache/{split}.log",
    benchmark:
        "benchmarks/face_cache/{split}.tsv"
    script:
        "../scripts/face_cache.py"

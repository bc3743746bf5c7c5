# Raw CelebA-Spoof metadata -> usable-image table -> subset -> subject-disjoint splits -> face cache.


if config["dataset"]["synthetic"]["enabled"]:

    rule synthesize_dataset:
        """Write the synthetic CelebA-Spoof-format dataset (demo and tests only)."""
        output:
            labels=label_files(),
        log:
            logs("synthesize_dataset.log"),
        threads: 4
        params:
            dataset=config["dataset"],
        script:
            "../scripts/synthesize_dataset.py"


rule ingest:
    """Read the label files and box files into the table of usable images, counting every problem."""
    input:
        labels=label_files(),
    output:
        images=results("metadata/images.parquet"),
        report=results("metadata/ingest_report.json"),
    log:
        logs("ingest.log"),
    benchmark:
        benchmarks("ingest.tsv")
    threads: 4
    params:
        dataset=config["dataset"],
        policies=config["ingest"],
    script:
        "../scripts/ingest.py"


rule split:
    """Choose the subset and split it by subject into train/val/test manifests."""
    input:
        images=results("metadata/images.parquet"),
    output:
        train=results("splits/train.parquet"),
        val=results("splits/val.parquet"),
        test=results("splits/test.parquet"),
        report=results("splits/split_report.json"),
    log:
        logs("split.log"),
    params:
        protocol=PROTOCOL,
        subset=config["subset"],
        split=config["split"],
    script:
        "../scripts/split.py"


rule face_cache:
    """Crop, square and resize every face of one split into a lossless uint8 array, with the manifest of its rows."""
    input:
        manifest=results("splits/{split}.parquet"),
    output:
        faces=results("faces/{split}.npy"),
        faces_manifest=results("faces/{split}.parquet"),
        report=results("faces/{split}.json"),
    log:
        logs("face_cache/{split}.log"),
    benchmark:
        benchmarks("face_cache/{split}.tsv")
    threads: 4
    params:
        root=config["dataset"]["root"],
        margin=config["faces"]["margin"],
        size=config["faces"]["size"],
        policies=config["ingest"],
    script:
        "../scripts/face_cache.py"

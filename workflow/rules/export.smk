# Trained models -> ONNX (checked, parity-tested on the test faces) -> static INT8 -> CPU latency -> Table 4.


rule export_onnx:
    """Export one trained model to a single ONNX file with its preprocessing as metadata; check parity on test faces."""
    input:
        weights=model_files("models/{name}")["weights"],
        summary=model_files("models/{name}")["summary"],
        test_faces=results("faces/test.npy"),
    output:
        onnx=results("onnx/{name}.onnx"),
        report=results("onnx/{name}.json"),
    log:
        logs("export_onnx/{name}.log"),
    benchmark:
        benchmarks("export_onnx/{name}.tsv")
    threads: 2
    params:
        name="{name}",
        face_margin=config["faces"]["margin"],
        face_size=config["faces"]["size"],
        opset=EXPORT["opset"],
        fold_constants=EXPORT["fold_constants"],
        atol=EXPORT["parity_tolerance"],
        rtol=EXPORT["parity_rtol"],
    script:
        "../scripts/export_onnx.py"


rule quantize_onnx:
    """Static QDQ INT8 model calibrated on validation faces; its test APCER/BPCER/ACER next to fp32."""
    input:
        fp32=results("onnx/{name}.onnx"),
        val_faces=results("faces/val.npy"),
        test_faces=results("faces/test.npy"),
        test_manifest=results("faces/test.parquet"),
    output:
        onnx=results("onnx/{name}.int8.onnx"),
        report=results("onnx/{name}.int8.json"),
    log:
        logs("quantize_onnx/{name}.log"),
    benchmark:
        benchmarks("quantize_onnx/{name}.tsv")
    threads: 2
    params:
        name="{name}",
        calibration_size=EXPORT["int8"]["calibration_size"],
        per_channel=EXPORT["int8"]["per_channel"],
    script:
        "../scripts/quantize_onnx.py"


rule latency:
    """Batch-1 CPU latency of ONNX Runtime fp32/INT8 and PyTorch eager at 1 thread and all cores.

    Takes every core so that no other job runs beside it: neighbours distort latency several-fold.
    """
    input:
        unpack(latency_inputs),
    output:
        latency=results("latency/{name}.json"),
    log:
        logs("latency/{name}.log"),
    benchmark:
        benchmarks("latency/{name}.tsv")
    threads: every_core
    params:
        warmup=EXPORT["latency"]["warmup"],
        runs=EXPORT["latency"]["runs"],
    script:
        "../scripts/latency.py"


rule table_onnx:
    """Table 4: parameters, ONNX size, CPU latency (fp32, INT8, PyTorch eager) and parity per model."""
    input:
        unpack(table4_inputs),
    output:
        **table_outputs("table4_onnx", "table4.rst", "4 ONNX", "ONNX"),
    log:
        logs("tables/table4_onnx.log"),
    params:
        models=EXPORT_MODELS,
    script:
        "../scripts/table4_onnx.py"

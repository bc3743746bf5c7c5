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
    """Static INT8 model, its recipe chosen on validation faces (FP32 fallback if none keeps ACER); test metrics next to FP32's."""
    input:
        fp32=results("onnx/{name}.onnx"),
        val_faces=results("faces/val.npy"),
        val_manifest=results("faces/val.parquet"),
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
        calibration_methods=EXPORT["int8"]["calibration_methods"],
        per_channel=EXPORT["int8"]["per_channel"],
        reduce_range=EXPORT["int8"]["reduce_range"],
        max_val_acer_change=EXPORT["int8"]["max_val_acer_change"],
        openvino=EXPORT["openvino"],
        bootstrap_n=EVAL["bootstrap_n"],
        seed=EVAL["seed"],
        ci_level=EVAL["ci_level"],
    script:
        "../scripts/quantize_onnx.py"


rule latency:
    """CPU latency of PyTorch eager, ONNX Runtime and OpenVINO (FP32, INT8) at 224 px and the trained size, 1/2/all threads.

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
        sizes=EXPORT["latency"]["input_sizes"],
        engines=latency_engines(),
        throughput_batch=EXPORT["latency"]["throughput_batch"],
        throughput_runs=EXPORT["latency"]["throughput_runs"],
    script:
        "../scripts/latency.py"


rule table_onnx:
    """Table 4: parameters, ONNX size, CPU latency of every engine and precision, INT8 recipe and parity per model."""
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

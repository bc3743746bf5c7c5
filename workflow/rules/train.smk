# Teacher and student training. Inputs are the train and val splits only: never test.


# Compute nodes are often offline: weights are fetched where the workflow is launched.
localrules:
    fetch_pretrained,


rule fetch_pretrained:
    """Download ImageNet weights of a timm model into resources/pretrained/ as safetensors."""
    output:
        weights="resources/pretrained/{arch}.safetensors",
    log:
        "logs/fetch_pretrained/{arch}.log",
    script:
        "../scripts/fetch_pretrained.py"


rule train_teacher:
    """Fine-tune the EfficientNet-B0 teacher; its best checkpoint (val F1) is frozen for distillation."""
    input:
        **teacher_inputs(),
    output:
        **model_outputs("teacher"),
    log:
        "logs/train/teacher.log",
    benchmark:
        "benchmarks/train/teacher.tsv"
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=8,
        mem_mb=16000,
        runtime=240,
    params:
        config=training_settings,
        out_dir=model_dir,
    script:
        "../scripts/train.py"


rule train_student:
    """Train the MobileNetV2 student of one scenario (S0 baseline, S1 tuned, S2 distilled, S3 both)."""
    input:
        unpack(student_inputs),
    output:
        **model_outputs("{scenario}"),
    log:
        "logs/train/{scenario}.log",
    benchmark:
        "benchmarks/train/{scenario}.tsv"
    wildcard_constraints:
        scenario="|".join(SCENARIOS),
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=8,
        mem_mb=16000,
        runtime=240,
    params:
        config=training_settings,
        out_dir=model_dir,
    script:
        "../scripts/train.py"

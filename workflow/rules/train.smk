# Teacher and student training. Inputs are the train and val splits only: never test.
# Training and tuning jobs have priority 1: on a few cores the exports of finished models wait
# instead of pushing the last model's training to the end of the run.


# Compute nodes are often offline: weights are fetched where the workflow is launched.
localrules:
    fetch_pretrained,


rule fetch_pretrained:
    """Download ImageNet weights of a timm model into resources/pretrained/ as safetensors."""
    output:
        weights=os.path.join(config["models"]["pretrained_dir"], "{arch}.safetensors"),
    log:
        logs("fetch_pretrained/{arch}.log"),
    params:
        arch="{arch}",
    script:
        "../scripts/fetch_pretrained.py"


rule train_teacher:
    """Fine-tune the EfficientNet-B0 teacher; its best checkpoint (val F1) is frozen for distillation."""
    input:
        **teacher_inputs(),
    output:
        **model_files("models/teacher"),
    log:
        logs("train/teacher.log"),
    benchmark:
        benchmarks("train/teacher.tsv")
    priority: 1
    threads: 2
    params:
        name="teacher",
        settings=training_settings,
    script:
        "../scripts/train.py"


rule train_student:
    """Train the MobileNetV2 student of one scenario (S0 baseline, S1 tuned, S2 distilled, S3 both)."""
    input:
        unpack(student_inputs),
    output:
        **model_files("models/{scenario}"),
    log:
        logs("train/{scenario}.log"),
    benchmark:
        benchmarks("train/{scenario}.tsv")
    priority: 1
    threads: 2
    params:
        name="{scenario}",
        settings=training_settings,
    script:
        "../scripts/train.py"

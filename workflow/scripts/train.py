"""Rule train_teacher, train_student (and their variants): fasflow.steps.run_train with the rule's named inputs, outputs and params."""

from fasflow.steps import run_train, run_rule

run_rule(run_train, snakemake)  # noqa: F821

"""Rule face_cache (and leakage_face_cache, external_face_cache): fasflow.steps.run_face_cache with the rule's named inputs, outputs and params."""

from fasflow.steps import run_face_cache, run_rule

run_rule(run_face_cache, snakemake)  # noqa: F821

"""The step layer: how a rule calls its step, and that every failure reaches the rule's log."""

from __future__ import annotations

import pytest
from conftest import ROOT
from snakemake.iocontainers import Namedlist

from fasflow.errors import DataError
from fasflow.runlog import run_logged, setup_logging
from fasflow.steps import run_rule


def named(values: dict, files: bool = True) -> Namedlist:
    """A Snakemake Namedlist as a job has it: a named list input spans several items."""
    out = Namedlist()
    for name, value in (values or {}).items():
        start = len(out)
        if files and isinstance(value, list):
            out.extend(value)
            out._set_name(name, start, end=len(out))
        else:
            out.append(value)
            out._set_name(name, start)
    return out


class FakeJob:
    """The parts of a rule script's `snakemake` object that run_rule reads."""

    def __init__(self, log, inputs=None, outputs=None, params=None, threads=1, rule="fake"):
        self.input = named(inputs)
        self.output = named(outputs)
        self.params = named(params, files=False)
        self.log = [str(log)]
        self.threads = threads
        self.rule = rule


@pytest.fixture(autouse=True)
def detach_logging():
    yield
    setup_logging(None)


def test_named_inputs_outputs_and_params_become_the_step_arguments(tmp_path):
    seen = {}

    def run_example(manifests, faces, size, threads):
        seen.update(manifests=manifests, faces=faces, size=size, threads=threads)

    job = FakeJob(tmp_path / "x.log", {"manifests": ["a.parquet", "b.parquet"]}, {"faces": "f.npy"}, {"size": 24}, threads=2)
    run_rule(run_example, job)
    assert seen == {"manifests": ["a.parquet", "b.parquet"], "faces": "f.npy", "size": 24, "threads": 2}
    assert type(seen["faces"]) is str and type(seen["manifests"][0]) is str  # plain types, not Snakemake's
    assert "rule fake: run_example" in (tmp_path / "x.log").read_text()


def test_a_clash_of_names_is_an_error(tmp_path):
    job = FakeJob(tmp_path / "x.log", {"faces": "in.npy"}, {"faces": "out.npy"})
    with pytest.raises(SystemExit) as exit_info:
        run_rule(lambda faces: None, job)
    assert exit_info.value.code == 2
    assert "'faces' is both" in (tmp_path / "x.log").read_text()


def test_an_unexpected_error_leaves_its_traceback_in_the_log(tmp_path):
    def broken():
        raise KeyError("no such column")

    with pytest.raises(SystemExit) as exit_info:
        run_logged(broken, tmp_path / "step.log")
    assert exit_info.value.code == 1
    text = (tmp_path / "step.log").read_text()
    assert "Traceback (most recent call last)" in text and "KeyError: 'no such column'" in text and "in broken" in text


def test_a_known_error_is_one_clear_line(tmp_path):
    def bad_input():
        raise DataError("results/x.parquet: no rows")

    with pytest.raises(SystemExit) as exit_info:
        run_logged(bad_input, tmp_path / "step.log")
    assert exit_info.value.code == 2
    text = (tmp_path / "step.log").read_text()
    assert "ERROR results/x.parquet: no rows" in text and "Traceback" not in text


def test_warnings_of_libraries_reach_the_log(tmp_path):
    # In a subprocess: pytest records warnings itself, which would hide them from logging.
    import subprocess
    import sys

    code = (
        "import sys, warnings; sys.path.insert(0, sys.argv[1]); from fasflow.runlog import run_logged; "
        "run_logged(lambda: warnings.warn('deprecated thing', UserWarning), sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", code, str(ROOT / "src"), str(tmp_path / "step.log")], check=True, capture_output=True)
    assert "deprecated thing" in (tmp_path / "step.log").read_text()

"""The workflow configuration: schema validation with defaults, and checks a schema cannot express.

The schema (workflow/schemas/config.schema.yaml) is the one source of every default: validation
fills them in, so code reads config["section"]["key"] and never guesses a default itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from .errors import ConfigError

FRACTION_TOLERANCE = 1e-6
_MAX_VALUE_CHARS = 120


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Validate `config` in place against the schema and fill in its defaults.

    A violation raises ConfigError naming the key (`train.batch_size`) and the offending value,
    in one line, instead of jsonschema's dump of the whole configuration.
    """
    from jsonschema import Draft202012Validator, validators

    schema = yaml.safe_load(Path(schema_path).read_text())
    base = Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, _copy(prop["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    filling = validators.extend(base, {"properties": set_defaults})
    error = next(iter(sorted(filling(schema).iter_errors(config), key=_error_order)), None)
    if error is not None:
        raise ConfigError(describe_schema_error(error))
    return config


def _copy(value):
    # Defaults are shared schema objects: each config gets its own copy.
    import copy

    return copy.deepcopy(value)


def _error_order(error) -> tuple:
    # Report the deepest, most specific problem first (the one a user can act on).
    return (-len(error.absolute_path), str(error.message))


def describe_schema_error(error) -> str:
    """`key: message (got value)` for one jsonschema ValidationError."""
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        return f"config key {key}: {error.message}"
    value = repr(error.instance)
    if len(value) > _MAX_VALUE_CHARS:
        value = value[:_MAX_VALUE_CHARS] + "..."
    message = error.message
    if len(message) > _MAX_VALUE_CHARS * 2:  # messages quote the instance: keep them short
        message = f"fails the schema's '{error.validator}' rule"
    return f"config key {key}: {message} (got {value})"


def check_config(config: dict) -> None:
    """Raise ConfigError naming the key for inconsistencies beyond the schema."""
    fractions = config["split"]["fractions"]
    total = sum(fractions.values())
    if abs(total - 1.0) > FRACTION_TOLERANCE:
        raise ConfigError(
            f"split.fractions must sum to 1, got {total:g} "
            f"(train {fractions['train']}, val {fractions['val']}, test {fractions['test']})"
        )
    if config["faces"]["size"] < config["train"]["input_size"]:
        raise ConfigError(
            f"faces.size ({config['faces']['size']}) must be at least train.input_size "
            f"({config['train']['input_size']})"
        )
    scenarios = list(config["scenarios"])
    for key, names in (
        ("evaluate.reference", [config["evaluate"]["reference"]]),
        ("replicates.scenarios", config["replicates"]["scenarios"]),
        ("replicates.reference", [config["replicates"]["reference"]]),
        ("leakage.scenarios", config["leakage"]["scenarios"]),
    ):
        for name in names:
            if name not in scenarios:
                raise ConfigError(f"{key}: {name!r} is not a scenario (have {scenarios})")
    if config["replicates"]["reference"] not in config["replicates"]["scenarios"]:
        raise ConfigError(
            f"replicates.reference: {config['replicates']['reference']!r} is not in replicates.scenarios"
        )
    check_tune(config["tune"])
    check_external_tests(config["external_tests"])
    check_zoo(config)


def check_tune(tune: dict) -> None:
    """Search ranges must be usable by Optuna (low < high, log ranges positive)."""
    for name, space in tune["search_space"].items():
        if name == "optimizer":
            continue
        if not space["low"] < space["high"]:
            raise ConfigError(f"tune.search_space.{name}: low ({space['low']}) must be below high ({space['high']})")
        if space["log"] and space["low"] <= 0:
            raise ConfigError(f"tune.search_space.{name}: a log range needs low > 0 (got {space['low']})")
    if tune["workers"] > tune["n_trials"]:
        raise ConfigError(f"tune.workers ({tune['workers']}) is more than tune.n_trials ({tune['n_trials']}): extra workers would idle")


def check_architectures(config: dict, known: list[str] | None = None) -> None:
    """models.student, models.teacher and the zoo's `students` must be timm architectures (nearest names in the error).

    Where Snakemake runs without timm (the rules run in the container), the check is left to the
    jobs, which fail on an unknown name; a warning says so.
    """
    if known is None:
        try:
            known = timm_architectures()
        except ImportError:
            import warnings

            warnings.warn("timm is not installed where the workflow is parsed: models.* and students are checked when the jobs run")
            return
    for key in ("student", "teacher"):
        check_architecture(config["models"][key], f"models.{key}", known)
    for name, arch in config["students"].items():
        check_architecture(arch, f"students.{name}", known)


def timm_architectures(cache_dir: str | Path | None = None) -> list[str]:
    """Every architecture name of the installed timm.

    Importing timm imports torch (seconds), and the workflow checks names every time it is
    parsed, so the list is cached per timm version (in `cache_dir`, default
    ~/.cache/fasflow); an unwritable cache only costs the import.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        timm_version = version("timm")
    except PackageNotFoundError as exc:
        raise ImportError("timm is not installed") from exc
    cache_dir = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "fasflow"
    cache = cache_dir / f"timm-{timm_version}-architectures.txt"
    try:
        names = cache.read_text().split()
        if names:
            return names
    except OSError:
        pass
    import timm

    names = sorted(timm.list_models())
    try:  # written whole or not at all (a parallel parse may read it)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}")
        partial.write_text("\n".join(names) + "\n")
        os.replace(partial, cache)
    except OSError:
        pass
    return names


def check_architecture(name: str, key: str, known: list[str] | None = None) -> None:
    """ConfigError naming `key` and the nearest valid names when timm has no `name`."""
    import difflib

    known = timm_architectures() if known is None else known
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    hint = f"; nearest: {', '.join(close)}" if close else ""
    raise ConfigError(f"{key}: {name!r} is not a timm architecture{hint} (see timm.list_models())")


def check_dataset_root(config: dict) -> None:
    """A real dataset must be there before anything runs; a synthetic one is generated."""
    dataset = config["dataset"]
    if dataset["synthetic"]["enabled"]:
        return
    root = Path(dataset["root"])
    if not root.is_dir():
        raise ConfigError(
            f"dataset.root: CelebA-Spoof not found at {root.resolve()} (looked for the folder "
            f"holding Data/ and metas/). Point dataset.root at your copy "
            f"(edit config/config.yaml or add --configfile my_site.yaml), or run the built-in synthetic "
            f"demo instead: make demo"
        )


# ---------------------------------------------------------------------------
# what one run depends on (the workflow passes exactly this to its jobs, so editing another
# section of the config does not retrain anything)


def run_settings(config: dict, name: str) -> dict:
    """Settings of the training run `name` ('teacher' or a scenario).

    {"arch": timm name, "train": config["train"], "hyperparameters": the run's section}; the
    teacher's hyperparameters say distill: false (it is never distilled or tuned).
    """
    if name == "teacher":
        return {
            "arch": config["models"]["teacher"],
            "train": config["train"],
            "hyperparameters": {**config["teacher"], "distill": False, "tune": False},
        }
    return {"arch": config["models"]["student"], "train": config["train"], "hyperparameters": config["scenarios"][name]}


def study_settings(config: dict, scenario: str) -> dict:
    """Settings of the Optuna study of `scenario`: its run's settings plus config["tune"]."""
    return {**run_settings(config, scenario), "tune": config["tune"]}


# ---------------------------------------------------------------------------
# beyond the paper: external test sets (fasflow.external) and the student zoo (fasflow.zoo);
# read when the workflow is parsed, so nothing here imports more than the standard library


def check_external_tests(sets: Mapping[str, Mapping]) -> None:
    """ConfigError naming the key for combinations the schema cannot express."""
    for name, spec in sets.items():
        key = f"external_tests.{name}"
        if spec["format"] == "table":
            if not spec["table"]:
                raise ConfigError(f"{key}.table: a table set needs the CSV or parquet file listing its images")
            if spec["synthetic"]["enabled"]:
                raise ConfigError(f"{key}.synthetic: only a folder set can be generated")
        else:
            if spec["table"]:
                raise ConfigError(f"{key}.table: only a table set has a table (format is folder)")
            generated = {"subject_level": True, "type_level": True, "boxes": "file", "box_units": "pixels"}
            wrong = {k: v for k, v in generated.items() if spec["synthetic"]["enabled"] and spec[k] != v}
            if wrong:
                raise ConfigError(f"{key}: a generated set (synthetic.enabled) is written with {generated}; set {wrong}")
            if spec["boxes"] == "columns":
                raise ConfigError(f"{key}.boxes: 'columns' needs format: table (a folder set has box files: boxes: file)")


def scored_models(config: Mapping, trained: Sequence[str]) -> list[str]:
    """The models the cross-dataset table scores: cross_dataset.models (in its order) or every trained model."""
    chosen = config["cross_dataset"]["models"]
    if chosen is None:
        return list(trained)
    unknown = [m for m in chosen if m not in trained]
    if unknown:
        raise ConfigError(f"cross_dataset.models: {unknown} not trained models (have {list(trained)})")
    return list(chosen)


def zoo_models(config: Mapping) -> dict[str, dict]:
    """name -> {"student", "arch", "recipe"} of every zoo model, in config order (S0 recipe first per student)."""
    zoo = config["zoo"]
    out = {}
    for student, arch in config["students"].items():
        out[student] = {"student": student, "arch": arch, "recipe": zoo["recipe"]}
        if zoo["distilled_recipe"]:
            out[f"{student}_{zoo['distilled_recipe']}"] = {"student": student, "arch": arch, "recipe": zoo["distilled_recipe"]}
    return out


def zoo_run_settings(config: Mapping, name: str) -> dict:
    """What one zoo model's training depends on (the shape of fasflow.config.run_settings)."""
    model = zoo_models(config)[name]
    return {"arch": model["arch"], "train": config["train"], "hyperparameters": config["scenarios"][model["recipe"]]}


def check_zoo(config: Mapping) -> None:
    """ConfigError naming the key: recipes must be untuned scenarios, model names must be new."""
    scenarios = config["scenarios"]
    zoo = config["zoo"]
    for key, name, distilled in (("zoo.recipe", zoo["recipe"], False), ("zoo.distilled_recipe", zoo["distilled_recipe"], True)):
        if name is None:
            continue
        if name not in scenarios:
            raise ConfigError(f"{key}: {name!r} is not a scenario (have {list(scenarios)})")
        if scenarios[name]["tune"]:
            raise ConfigError(f"{key}: scenario {name!r} is tuned; zoo students reuse an untuned scenario's hyperparameters")
        if scenarios[name]["distill"] != distilled:
            raise ConfigError(f"{key}: scenario {name!r} must {'' if distilled else 'not '}be distilled (distill: {str(distilled).lower()})")
    taken = set(scenarios) | {"teacher"}
    for name in zoo_models(config):
        if name in taken:
            raise ConfigError(f"students: model name {name!r} is already a scenario or the teacher; choose another name")

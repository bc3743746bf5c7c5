"""Configuration checks that a JSON schema cannot express."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

FRACTION_TOLERANCE = 1e-6


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
    check_tune(config)


def check_tune(config: dict) -> None:
    """Search ranges must be usable by Optuna (low < high, log ranges positive)."""
    tune = config.get("tune")
    if not tune:
        return
    for name, space in tune["search_space"].items():
        if name == "optimizer":
            continue
        if not space["low"] < space["high"]:
            raise ConfigError(f"tune.search_space.{name}: low ({space['low']}) must be below high ({space['high']})")
        if space.get("log") and space["low"] <= 0:
            raise ConfigError(f"tune.search_space.{name}: a log range needs low > 0 (got {space['low']})")
    if tune["workers"] > tune["n_trials"]:
        raise ConfigError(f"tune.workers ({tune['workers']}) is more than tune.n_trials ({tune['n_trials']}): extra workers would idle")


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

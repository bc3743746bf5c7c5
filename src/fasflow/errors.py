"""Errors that carry a message meant for the person running the workflow."""


class FasflowError(Exception):
    """A problem with the user's input or configuration (exit code 2, no traceback)."""


class DataError(FasflowError):
    """Input data that cannot be used under the configured policy."""


class ConfigError(FasflowError):
    """A configuration value that is missing or inconsistent."""

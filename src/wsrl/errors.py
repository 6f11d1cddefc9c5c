"""Errors that mean "the input is wrong": the command line prints their message (no traceback) and exits 2."""


class WsrlError(ValueError):
    """Bad input: the message names the thing and the fix."""


class ConfigError(WsrlError):
    """A configuration value is unknown or out of range."""


class CheckpointError(WsrlError):
    """A checkpoint is missing, malformed or does not fit what it is loaded into."""

"""Exceptions the twin raises for bad input or failed runs; the CLI prints them as one line."""

from __future__ import annotations


class TwinError(Exception):
    """Base for errors a user can act on; the message says what was wrong and where."""


class ConfigError(TwinError):
    """A configuration file is missing, unreadable or does not match its schema."""


class DataError(TwinError):
    """A data file (raster, vector, table, tileset, message) is malformed or inconsistent."""

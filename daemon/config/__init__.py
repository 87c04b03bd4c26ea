"""Typed configuration: `load_config` reads TOML into a frozen `Config` of sections, one module
per wing (`*_sections.py`); reading the file and resolving secrets live in `loading`."""

from daemon.config.loading import ConfigError, ConfigIssue, load_config
from daemon.config.root import Config

__all__ = ["Config", "ConfigError", "ConfigIssue", "load_config"]

"""Typed configuration: `load_config` reads TOML into a frozen `Config` of sections, one module
per wing (`*_sections.py`); loading, secrets and line numbers live in `load`."""

from daemon.config.load import ConfigError, ConfigIssue, load_config
from daemon.config.model import Config

__all__ = ["Config", "ConfigError", "ConfigIssue", "load_config"]

"""Edge-device benchmark and deployment harness."""

__version__ = "0.1.0"

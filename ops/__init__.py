"""Operations task runner for self-hosted servers: deploy, backup, restore."""

__version__ = "0.1.0"

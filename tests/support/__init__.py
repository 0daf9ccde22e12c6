"""Helpers shared by tests (sample app git repositories, ...)."""

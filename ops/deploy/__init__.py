"""The deploy pipeline: image, env, migrate, rolling switch behind nginx, rollback.

``pipeline`` orchestrates; ``switch`` holds the per-host steps; ``release`` the records;
``image`` build/push/pull; ``migrations`` the one-off migrate run and its bookkeeping.
"""

"""What a deploy's migrations will do, known before they run.

- ``sql``: split a ``migration.sql`` into statements (quotes, comments, dollar quotes).
- ``classify``: the tool's own verdict per statement and per migration (destructive,
  locking, safe) and whether the previous release can run on the new schema.
- ``squawk``: the squawk linter (``squawk-cli`` on PyPI) over the same files.
- ``source``: the migrations of a release, read from the build context or the image.
- ``state``: ``_prisma_migrations`` and Prisma's failure states (P3009, P1002).
- ``review``: pending migrations + verdicts + consent, as the deploy plan shows them.
"""

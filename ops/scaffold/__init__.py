"""``inv scaffold`` (alias ``inv init``): the production files of a Next.js app, written into
its checkout from what this tool knows about deploying it.

- ``facts``: what the checkout says about itself (package.json, next.config, schema file).
- ``files``: every file's content (templates in ``templates/``; env.example and
  config/environment.ts generated from the env schema the deploy validates).
- ``write``: the plan (create / unchanged / kept) and writing it, never overwriting a
  file without ``force``.
"""

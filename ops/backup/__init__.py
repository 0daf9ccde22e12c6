"""Backups to S3 and restore to a timestamp.

Object layout (see ``manifest.py``): each backup is a data object plus a JSON
manifest written last, under ``<prefix>backups/<env>/<kind>/YYYY/MM/DD/``. A data
object without a manifest is an orphan (an interrupted backup) and does not exist
for listing, retention or restore.

Core modules: ``manifest`` (ids, keys, manifest JSON), ``timeparse`` (strict
``--at`` parsing), ``catalog`` (listing, choosing a backup), ``retention``
(grandfather-father-son plan), ``stream_upload`` (bounded-memory multipart upload
with SHA-256 while streaming) and ``crypto`` (optional client-side encryption).
"""

"""Restore the database (``inv restore``) and the uploads (``inv restore.uploads``) from S3.

Modules: ``plan`` (the backup chosen and checked, the plan), ``objects``
(reading a backup object from S3), ``database`` (names, SQL, pg_restore, the swap), ``role``
(the non-superuser pg_restore runs as), ``run`` (applying a database plan), ``kept`` (the
``<db>_before_<ts>`` databases: list, drop, put back), ``uploads`` (the uploads volume); the maintenance page and the
site probes are ``ops.traffic``.

Database, in this order, and what a failure at each step leaves behind:

1. ``--at`` parsed strictly (or ``now``); the newest db backup whose data (its snapshot)
   is from at or before it is chosen, or ``--id`` names one      -> nothing touched
2. its manifest is authenticated (HMAC keyed from the passphrase, when one is
   configured; ``ops.backup.authenticity``), its object streamed from S3 and its SHA-256
   and size checked against the manifest; the plan is shown      -> nothing touched
   (``--dry-run`` stops here: it reads S3, it changes nothing)
3. confirmation (type the environment name) unless ``--yes``
4. a safety backup of the live database (``backup.db``, which takes and releases the
   environment lock itself), then the environment lock for the rest -> nothing touched
5. a NEW database ``<db>_restore_<ts>`` is created next to the live one and
   ``pg_restore`` (inside the Postgres accessory, as the powerless role ``ops_restore``:
   ``ops.restore.role``) is fed exactly the object that was checked (``If-Match``)
   streamed S3 -> here -> SSH channel -> ``docker exec -i``, an encrypted one
   authenticated chunk by chunk; the bytes are hashed again on the way; the objects are
   handed to the app's role; the row count of every table and the migration head are
   compared with the manifest                                 -> failure: the new database is dropped;
                                                   the live one never stopped serving
6. traffic stops: on every web host a maintenance container joins the app network
   under the name nginx proxies to (it answers 503 + Retry-After), then the app
   containers are stopped (SIGTERM: in-flight requests finish) and taken off it
7. the live database is closed to new connections, the remaining sessions are
   terminated, and in ONE transaction ``<db>`` becomes ``<db>_before_<ts>`` and
   ``<db>_restore_<ts>`` becomes ``<db>``     -> failure: the transaction rolls back,
                                                 the live database is reopened
8. whatever happened in 6-7: the app containers are started, health-checked and put
   back behind nginx, the maintenance container removed
9. an audit line on every host and in S3

Why this way: the live database is never written to. Until the rename, every failure
(pg_restore error, count mismatch, SSH cut, Ctrl-C) leaves it exactly as it was and
serving; the rename is one transaction; and ``<db>_before_<ts>`` (kept, not dropped)
holds everything up to the moment traffic stopped, including writes made after the
safety backup. Downtime is the swap only (seconds), not the length of the restore.
"""

from ops.restore.errors import RestoreFailed, RestoreRefused
from ops.restore.plan import DbPlan, UploadsPlan, prepare_db, prepare_uploads
from ops.restore.run import SAFETY_REASON, DbResult, restore_db
from ops.restore.uploads import UploadsResult, restore_uploads

__all__ = ["SAFETY_REASON", "DbPlan", "DbResult", "RestoreFailed", "RestoreRefused", "UploadsPlan", "UploadsResult",
           "prepare_db", "prepare_uploads", "restore_db", "restore_uploads"]

#!/usr/bin/env bash
# Cron wrapper: back up the database of an environment to S3 (inv backup.db).
#
#   scripts/backup-db.sh ENV [extra backup.db flags]
#   e.g. crontab:  0 3 * * *  /srv/ops/scripts/backup-db.sh prod >>/var/log/ops-backup.log 2>&1
#
# Every output line is prefixed with a UTC timestamp. Exit status:
#   0  backup written (data object + manifest in S3)
#   1  backup failed: nothing kept (multipart upload aborted, no manifest); see the log
#   2  usage or configuration error (no ENV, unknown environment, bad env file...):
#      nothing was attempted
# After a successful backup, run `inv backup.check --host ENV` from monitoring to alert
# on staleness; a failed cron run alone is easy to miss.
OPS_WRAPPER=$0 exec "$(dirname "$0")/cron-task" backup.db "$@"

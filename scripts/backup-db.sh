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
set -uo pipefail
usage() { echo "usage: $(basename "$0") ENV [backup.db flags]" >&2; exit 2; }
[ $# -ge 1 ] && [ -n "$1" ] && [[ "$1" != -* ]] || usage
env_name=$1; shift
cd "$(dirname "$0")/.." || exit 2
inv=.venv/bin/inv
[ -x "$inv" ] || { echo "$(date -u +%FT%TZ) error: $inv not found: run scripts/bootstrap first" >&2; exit 2; }

stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date -u +%FT%TZ)" "$line"; done; }
echo "backup.db --host $env_name: start" | stamp
"$inv" backup.db --host "$env_name" "$@" 2>&1 </dev/null | stamp
rc=${PIPESTATUS[0]}
case $rc in
  0) echo "backup.db --host $env_name: ok" | stamp ;;
  2) echo "backup.db --host $env_name: configuration error (exit 2)" | stamp ;;
  *) echo "backup.db --host $env_name: FAILED (exit $rc)" | stamp; rc=1 ;;
esac
exit "$rc"

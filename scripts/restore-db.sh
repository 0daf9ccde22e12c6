#!/usr/bin/env bash
# Restore an environment's database to a point in time, without a terminal to confirm on.
#
#   scripts/restore-db.sh ENV TIMESTAMP --dry-run       # the plan only (reads S3, changes nothing)
#   scripts/restore-db.sh ENV TIMESTAMP --yes-restore   # restore for real
#
# A thin wrapper around `inv restore --host ENV --at TIMESTAMP`. Because nobody can type
# the environment name here, the third argument must say what is wanted, explicitly:
# --yes-restore (restore) or --dry-run (plan). Anything else is refused.
# TIMESTAMP is ISO 8601 with an offset: 2026-11-24T03:00:00Z or 2026-11-24T04:00:00+01:00.
#
# Exit status: 0 restored (or planned); 1 the restore failed or was refused (the message
# says what state it left: before the swap the live database is untouched); 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 ENV TIMESTAMP --yes-restore|--dry-run" >&2
  echo "  e.g. $0 prod 2026-11-24T03:00:00Z --dry-run" >&2
  exit 2
}

[ "$#" -eq 3 ] || usage
env_name=$1
at=$2
case "$3" in
  --yes-restore) mode=(--yes) ;;
  --dry-run) mode=(--dry-run) ;;
  *) usage ;;
esac

inv=.venv/bin/inv
[ -x "$inv" ] || inv=inv
set +e
"$inv" restore --host "$env_name" --at "$at" "${mode[@]}" </dev/null
status=$?
set -e
[ "$status" -eq 0 ] && exit 0
exit 1

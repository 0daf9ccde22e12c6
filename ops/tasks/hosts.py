"""``inv hosts``: what an environment contains, and trusting host keys."""

from __future__ import annotations

from ops.errors import ConfigError
from ops.hostkeys import plan_trust, write_trust
from ops.inventory import resolve_target
from ops.table import format_table
from ops.tasks import ops_task, print_json, say


@ops_task(name="list", default=True, help={"host": "environment (prod) or env:host (prod:web1)",
                              "json": "print JSON instead of a table"})
def list_(c, host="", json=False):
    """List the hosts of an environment with their roles and addresses."""
    target = resolve_target(host)
    rows = [{"name": h.name, "address": h.address, "port": h.port, "user": h.user,
             "roles": list(h.roles), "private_address": h.private_address or None} for h in target.hosts]
    print_json({"environment": target.env.name, "hosts": rows})
    if json:
        return
    say(format_table(["HOST", "ADDRESS", "PORT", "USER", "ROLES", "PRIVATE"],
                       [[r["name"], r["address"], r["port"], r["user"], ",".join(r["roles"]),
                         r["private_address"] or "-"] for r in rows]))

@ops_task(mutating=True, help={"host": "environment (prod) or env:host (prod:web1)",
                "yes": "write the keys without asking (only after checking the fingerprints out of band)",
                "replace": "allow replacing a key that differs from the one on file (host rebuilt)"})
def trust(c, host="", yes=False, replace=False):
    """Fetch host keys, show their fingerprints, write them to the project's known_hosts."""
    target = resolve_target(host)
    changes = plan_trust(target)
    for change in changes:
        say(change.describe())
    pending = [ch for ch in changes if ch.needs_write]
    if not pending:
        say("nothing to do: every key is already trusted")
        return
    changed = [ch.host.name for ch in pending if ch.is_replacement]
    if changed and not replace:
        raise ConfigError(f"host key changed for {', '.join(changed)}; refusing to replace it",
                          hint="confirm the new fingerprint with the host's owner, then re-run with --replace")
    if not yes:
        try:
            answer = input(f"Write these keys to {target.env.ssh.known_hosts}? Type 'yes': ")
        except EOFError:  # no terminal (cron, CI): never trust silently
            answer = ""
        if answer.strip() != "yes":
            raise ConfigError("not confirmed; nothing written", hint="answer 'yes' or pass --yes")
    write_trust(target.env.ssh.known_hosts, pending)
    say(f"wrote {sum(len(ch.keys) for ch in pending)} key(s) for {len(pending)} host(s) to "
          f"{target.env.ssh.known_hosts}")

"""Invoke entry point: assembles the namespace from ops/tasks/*. Nothing else."""

from invoke import Collection

from ops.tasks import accessory, app, backup, deploy, doctor, hosts, lock, restore, sandbox
from ops.tasks import db as db_tasks
from ops.tasks import maintenance as maintenance_tasks
from ops.tasks import prune as prune_tasks
from ops.tasks import scaffold as scaffold_tasks
from ops.tasks import setup as setup_tasks
from ops.tasks import shell as shell_tasks
from ops.tasks import smoke as smoke_tasks
from ops.tasks import status as status_tasks
from ops.tasks import tls as tls_tasks

ns = Collection()
ns.add_task(doctor.doctor)
ns.add_task(status_tasks.status)
ns.add_task(smoke_tasks.smoke)
ns.add_task(shell_tasks.ssh)
ns.add_task(prune_tasks.prune)
ns.add_task(deploy.deploy)
ns.add_task(deploy.rollback)
ns.add_task(deploy.releases)
ns.add_task(deploy.audit)
ns.add_task(scaffold_tasks.scaffold)
ns.add_task(setup_tasks.setup)
ns.add_collection(Collection.from_module(lock), name="lock")
ns.add_collection(Collection.from_module(hosts), name="hosts")
ns.add_collection(Collection.from_module(sandbox), name="sandbox")
ns.add_collection(Collection.from_module(accessory), name="accessory")
ns.add_collection(Collection.from_module(app), name="app")
ns.add_collection(Collection.from_module(backup), name="backup")
ns.add_collection(Collection.from_module(restore), name="restore")
ns.add_collection(Collection.from_module(maintenance_tasks), name="maintenance")
ns.add_collection(Collection.from_module(db_tasks), name="db")
ns.add_collection(Collection.from_module(tls_tasks), name="tls")

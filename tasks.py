"""Invoke entry point: assembles the namespace from ops/tasks/*. Nothing else."""

from invoke import Collection

from ops.tasks import accessory, app, backup, deploy, doctor, hosts, lock, restore, sandbox

ns = Collection()
ns.add_task(doctor.doctor)
ns.add_task(deploy.deploy)
ns.add_task(deploy.rollback)
ns.add_task(deploy.releases)
ns.add_task(deploy.audit)
ns.add_collection(Collection.from_module(lock), name="lock")
ns.add_collection(Collection.from_module(hosts), name="hosts")
ns.add_collection(Collection.from_module(sandbox), name="sandbox")
ns.add_collection(Collection.from_module(accessory), name="accessory")
ns.add_collection(Collection.from_module(app), name="app")
ns.add_collection(Collection.from_module(backup), name="backup")
ns.add_collection(Collection.from_module(restore), name="restore")

"""Invoke entry point: assembles the namespace from ops/tasks/*. Nothing else."""

from invoke import Collection

from ops.tasks import doctor, hosts, sandbox

ns = Collection()
ns.add_task(doctor.doctor)
ns.add_collection(Collection.from_module(hosts), name="hosts")
ns.add_collection(Collection.from_module(sandbox), name="sandbox")

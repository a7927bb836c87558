"""`make chaos`: seeded fault loops against a real kube-apiserver and etcd, with counts.

Each scenario runs the real `finetune operator` process (kopf) against the real API
server the tests start (tests/support/real_kube.py), plays KubeRay by moving each
RayJob through its states, injects its faults at moments drawn from a seeded random
generator, and checks what an operator must never do: create a RayJob or ConfigMap
twice, lose a job, leave a status that disagrees with its RayJob, or move a job's
phase backwards. `python -m chaos` runs every scenario and prints a table; the tests
in tests/chaos run short versions and assert the same invariants.

Modules: `client` (HTTP to the server, audit-log counts), `operators` (the operator
process: start, SIGKILL), `kuberay` (the KubeRay player), `recorder` (every status
write, from a watch), `invariants` (the checks), `scenarios` (the loops), `proxy`
(a fault-injecting HTTP proxy in front of the server) and `__main__` (the report).
"""

"""A Postgres cluster on Patroni, etcd and HAProxy (issue 15), pure logic only.

:mod:`pgsteady.cluster.topology` validates the cluster's inputs; the renderers turn them
into etcd's command line and RBAC bootstrap (:mod:`~pgsteady.cluster.etcd`), haproxy.cfg
(:mod:`~pgsteady.cluster.haproxy`) and patroni.yml with its DCS document
(:mod:`~pgsteady.cluster.patroni`). Nothing here is wired into the deploy yet.
"""

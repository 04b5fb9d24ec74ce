"""Kubernetes mode from the command line: upstream's flags -> a :class:`KubernetesSource`.

Apart from ``k8s_args`` (the flags and their checks) and ``kubernetes`` (the source), so the
imports run one way: ``k8s_mode`` -> both, neither back (the cycle of issue 12).
"""

from __future__ import annotations

import argparse
import os

from endpoint_picker.datastore import Datastore
from endpoint_picker.errors import ConfigError
from endpoint_picker.sources.k8s_args import (
    deployment_name,
    parse_ports,
    parse_selector,
    resolve_namespace,
)
from endpoint_picker.sources.kubernetes import KubernetesSource


def from_args(args: argparse.Namespace, datastore: Datastore) -> KubernetesSource | None:
    """The source the flags ask for, or None when neither pool nor selector is given."""
    pool_name: str = args.pool_name
    selector_text: str = args.endpoint_selector
    if pool_name and selector_text:
        raise ConfigError("give either --pool-name or --endpoint-selector, not both")
    if args.endpoint_target_ports and not selector_text:
        raise ConfigError("--endpoint-target-ports needs --endpoint-selector")
    if not pool_name and not selector_text:
        return None
    namespace = resolve_namespace(args.pool_namespace)
    common = {
        "pool_namespace": namespace,
        "pool_group": args.pool_group,
        "leader_election": args.ha_enable_leader_election,
        "kubeconfig": args.kubeconfig,
    }
    if pool_name:
        return KubernetesSource(datastore, pool_name=pool_name, **common)
    return KubernetesSource(
        datastore,
        pool_name=deployment_name(os.environ.get("POD_NAME")),
        endpoint_selector=parse_selector(selector_text),
        target_ports=parse_ports(args.endpoint_target_ports),
        **common,
    )

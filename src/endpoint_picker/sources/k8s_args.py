"""Upstream's Kubernetes flags for ``epp run`` and their validation.

The source itself is built from them by ``sources.k8s_mode.from_args``: this module imports
nothing of the source, so the dependency runs one way (issue 12).

Names, defaults and rules are upstream's (``pkg/epp/server/options.go``): exactly one of
``--pool-name`` and ``--endpoint-selector`` selects Kubernetes mode (neither means the run uses
another source); the namespace comes from the flag, then ``NAMESPACE``, then ``default``.
"""

from __future__ import annotations

import argparse
import os
import re

from endpoint_picker.errors import ConfigError
from endpoint_picker.sources.k8s_resources import POOL_GROUP

_DEPLOYMENT_FROM_POD = re.compile(r"^(.+)-[a-z0-9]+-[a-z0-9]+$")
_LABEL_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Kubernetes-mode flags (upstream names and defaults) to ``parser``."""
    group = parser.add_argument_group(
        "kubernetes", "Serve one InferencePool (or a label selector) from the Kubernetes API."
    )
    group.add_argument("--pool-name", default="", help="InferencePool to serve.")
    group.add_argument(
        "--pool-namespace",
        default="",
        help="Namespace of the pool (default: $NAMESPACE, else 'default').",
    )
    group.add_argument(
        "--pool-group",
        default=POOL_GROUP,
        help=f"API group of the pool, matched against poolRef.group (default {POOL_GROUP}).",
    )
    group.add_argument(
        "--endpoint-selector",
        default="",
        help="Standalone mode without CRDs: pods matching k=v[,k2=v2] (no whitespace).",
    )
    group.add_argument(
        "--endpoint-target-ports",
        action="append",
        default=[],
        metavar="PORT[,PORT]",
        help="Standalone mode: model-server ports (1-8, repeatable or comma-separated).",
    )
    group.add_argument(
        "--ha-enable-leader-election",
        action="store_true",
        help="Elect a leader over a Lease; only the leader is ready and writes status.",
    )
    group.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: in-cluster config, then $KUBECONFIG, ~/.kube/config).",
    )


def parse_selector(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` as a dict; anything else is a ConfigError naming the bad part."""
    selector: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key or any(c.isspace() for c in part):
            raise ConfigError(
                f"expected k=v[,k2=v2] without spaces, got {part!r}", path="--endpoint-selector"
            )
        if not _LABEL_PART.match(key) or (value and not _LABEL_PART.match(value)):
            raise ConfigError(f"invalid label {part!r}", path="--endpoint-selector")
        selector[key] = value
    return selector


def parse_ports(values: list[str]) -> list[int]:
    """Ports from repeated/comma-separated flags: 1-8 unique, each 1-65535, duplicates dropped."""
    ports: list[int] = []
    for value in values:
        for item in value.split(","):
            try:
                port = int(item.strip())
            except ValueError:
                raise ConfigError(
                    f"not a port number: {item!r}", path="--endpoint-target-ports"
                ) from None
            if not 1 <= port <= 65535:
                raise ConfigError(
                    f"port {port} out of range 1-65535", path="--endpoint-target-ports"
                )
            if port not in ports:
                ports.append(port)
    if not 1 <= len(ports) <= 8:
        raise ConfigError("give 1 to 8 target ports", path="--endpoint-target-ports")
    return ports


def resolve_namespace(flag: str) -> str:
    return flag or os.environ.get("NAMESPACE") or "default"


def deployment_name(pod_name: str | None) -> str:
    """The Deployment owning this pod, from ``POD_NAME`` (upstream's standalone pool name)."""
    if not pod_name:
        raise ConfigError(
            "standalone mode needs the POD_NAME environment variable", path="--endpoint-selector"
        )
    match = _DEPLOYMENT_FROM_POD.match(pod_name)
    if match is None:
        raise ConfigError(
            f"POD_NAME {pod_name!r} is not <deployment>-<hash>-<id>", path="--endpoint-selector"
        )
    return match.group(1)

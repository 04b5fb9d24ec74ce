"""A model-server Pod in a manifest: the part the EPP reads (labels, IP, readiness).

For runs without Kubernetes, ``epp run -f`` accepts ``v1`` Pod documents beside the pool, so a
pool's members can carry their labels (``llm-d.ai/role`` for P/D) as they would in a cluster:
the pool's selector picks the pods and its ``targetPorts`` give each pod's endpoints. Only
``metadata`` and ``status.podIP`` matter; the rest of a real pod (``spec``, other status
fields) is accepted and ignored. A pod is ready unless its ``Ready`` condition says otherwise.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from endpoint_picker.api.types import Model, Resource


class PodStatus(Model):
    """``status``: the pod's IP and conditions; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    pod_ip: str = Field(alias="podIP", min_length=1)
    """The address the EPP routes to (required in a manifest)."""
    conditions: list[dict[str, Any]] = Field(default_factory=list)


class ManifestPod(Resource):
    """A ``v1`` Pod given in a manifest."""

    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Pod"

    api_version: Literal["v1"] = "v1"
    kind: Literal["Pod"] = "Pod"
    spec: dict[str, Any] = Field(default_factory=dict)
    status: PodStatus

    @property
    def ready(self) -> bool:
        for cond in self.status.conditions:
            if cond.get("type") == "Ready":
                return bool(cond.get("status") == "True")
        return True

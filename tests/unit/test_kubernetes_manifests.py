"""deploy/ validates offline: built-in kinds against Kubernetes' own schemas (kubernetes-validate,
the newest version it bundles), our custom resources against the API models, and the pieces agree
with each other (ports, probes, service account)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from endpoint_picker import cli
from endpoint_picker.api import InferenceObjective, InferencePool
from endpoint_picker.config.loader import load_config_text
from endpoint_picker.runner.commands import options_from_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = kubernetes_validate.latest_version()
CUSTOM: dict[str, type[InferencePool] | type[InferenceObjective]] = {
    "InferencePool": InferencePool,
    "InferenceObjective": InferenceObjective,
}


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_docs() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            out += docs(path)
    return out


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in all_docs() if d["kind"] == kind]


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(DEPLOY.rglob("*.yaml")) if p.name != "kustomization.yaml"],
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_every_manifest_validates_offline(path: Path) -> None:
    found = docs(path)
    assert found, f"{path} has no documents"
    for doc in found:
        model = CUSTOM.get(doc["kind"])
        if model is not None:
            model.model_validate(doc)  # the same rules as the CRD's schema
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_broken_manifest_is_rejected() -> None:
    """The validation above can fail: a misspelt field in a Deployment is caught."""
    deployment = by_kind("Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def _kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the offline kustomize build is not checked")
    built = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


def test_every_kustomization_lists_its_folder() -> None:
    """Each folder's manifests are all in its kustomization (nothing silently left out)."""
    for kfile in sorted(DEPLOY.rglob("kustomization.yaml")):
        listed = docs(kfile)[0]["resources"]
        files = {p.name for p in kfile.parent.glob("*.yaml") if p.name != "kustomization.yaml"}
        assert files <= set(listed), (kfile, files - set(listed))
        for entry in listed:
            assert (kfile.parent / entry).exists(), (kfile, entry)


def test_base_builds_offline() -> None:
    kinds = sorted(d["kind"] for d in _kustomize(DEPLOY))
    assert kinds.count("CustomResourceDefinition") == 5  # pool; objective, rewrite x 2 groups
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding"} <= set(kinds)


def test_sidecar_overlay_adds_envoy_on_the_fast_front() -> None:
    built = _kustomize(DEPLOY / "sidecar")
    deployment = next(d for d in built if d["kind"] == "Deployment")
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert "--front=fast" in containers["epp"]["args"]
    # The unauthenticated side ports stay inside the pod (issue 18, item 3).
    assert {"--pick-host=127.0.0.1", "--als-host=127.0.0.1"} <= set(containers["epp"]["args"])
    envoy = containers["envoy"]
    mount = envoy["volumeMounts"][0]
    volume = next(
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    config_map = next(
        d
        for d in built
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
    )
    assert f"{mount['mountPath']}/envoy.yaml" in envoy["args"]
    gateway = next(
        d for d in built if d["kind"] == "Service" and "gateway" in d["metadata"]["name"]
    )
    assert gateway["spec"]["ports"][0]["targetPort"] == envoy["ports"][0]["name"]
    # The committed Envoy config is exactly what `epp envoy-config` prints for those settings.
    printed = subprocess.run(
        [sys.executable, "-m", "endpoint_picker.cli", "envoy-config", "--front", "fast",
         "--listen-host", "0.0.0.0", "--listen-port", str(envoy["ports"][0]["containerPort"]),
         "--pick-address", "127.0.0.1:9004", "--als-address", "127.0.0.1:9005"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert config_map["data"]["envoy.yaml"] == printed, (
        "regenerate deploy/sidecar/envoy-config.yaml"
    )


def test_deployment_service_and_probes_agree() -> None:
    deployment = by_kind("Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 9002, "grpc-health": 9003, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == 9003
    # With leader election, readiness must ask the leader-only service name.
    assert "--ha-enable-leader-election" in container["args"]
    assert container["readinessProbe"]["grpc"]["service"] == "readiness"
    # Probes, the gateway and Prometheus come from outside the pod: not a loopback address.
    assert epp_options(container["args"]).epp.host == "0.0.0.0"
    assert container["livenessProbe"]["grpc"]["service"] == "liveness"
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}

    service = by_kind("Service")[0]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert {p["port"] for p in service["spec"]["ports"]} == {9002, 9003, 9090}

    account = by_kind("ServiceAccount")[0]["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    binding = by_kind("RoleBinding")[0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    assert binding["roleRef"]["name"] == by_kind("Role")[0]["metadata"]["name"]


def epp_options(args: list[str]) -> Any:
    """The Deployment's arguments through ``epp``'s own parser, as the image's entrypoint."""
    parser = cli.build_parser()
    argv, upstream = cli.prepare_argv(parser, args)
    ns = parser.parse_args(argv)
    ns.upstream_mode = upstream
    return options_from_args(ns)


def test_deployment_runs_upstreams_argument_list_with_its_config_mounted() -> None:
    deployment = by_kind("Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    options = epp_options(container["args"])
    assert options.epp.kubernetes_args is not None and options.front == "extproc"
    assert options.epp.upstream.metrics_auth is True  # upstream's default, RBAC in rbac.yaml
    # Leader election: Recreate, or a rolling update would wait forever on a standby.
    assert options.epp.kubernetes_args.ha_enable_leader_election
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    # --config-file names a key of the ConfigMap mounted at /config, and that config loads.
    config_file = Path(options.epp.config_file)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(config_file.parent))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = next(
        c for c in by_kind("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]
    )
    load_config_text(config_map["data"][config_file.name])


def test_rbac_grants_the_metrics_reviews_and_a_reader_role() -> None:
    roles = {r["metadata"]["name"]: r for r in by_kind("ClusterRole")}
    auth = roles["vllm-llama3-8b-instruct-epp-auth"]["rules"]
    assert {(r["apiGroups"][0], r["resources"][0]) for r in auth} == {
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    }
    reader = roles["vllm-llama3-8b-instruct-epp-metrics-reader"]["rules"]
    assert reader == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]


def test_example_pool_is_the_one_the_epp_serves() -> None:
    pool = by_kind("InferencePool")[0]
    args = by_kind("Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert epp_options(args).epp.kubernetes_args.pool_name == pool["metadata"]["name"]
    for objective in by_kind("InferenceObjective"):
        assert objective["spec"]["poolRef"]["name"] == pool["metadata"]["name"]
    service = by_kind("Service")[0]["metadata"]["name"]
    assert pool["spec"]["endpointPickerRef"]["name"] == service

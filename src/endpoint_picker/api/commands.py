"""``epp crds`` and ``epp validate``: the API's two commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    crds = subparsers.add_parser(
        "crds",
        help="print the InferencePool, InferenceObjective and InferenceModelRewrite CRDs (YAML)",
        description=(
            "Print the CustomResourceDefinitions (apiextensions.k8s.io/v1) generated from this "
            "project's models - InferencePool (inference.networking.k8s.io/v1), and "
            "InferenceObjective and InferenceModelRewrite (v1alpha2) in both GIE's group "
            "(inference.networking.x-k8s.io) and llm-d-router's (llm-d.ai) - as one "
            "multi-document YAML stream for `kubectl apply -f -`. With --output-dir, write one "
            "file per CRD instead (as committed under deploy/crds/)."
        ),
    )
    crds.add_argument(
        "-o", "--output-dir", metavar="DIR", help="write <group>_<plural>.yaml files into DIR"
    )
    crds.set_defaults(func=_crds)

    validate = subparsers.add_parser(
        "validate",
        help="check InferencePool/InferenceObjective/InferenceModelRewrite manifests as the API "
        "server would",
        description=(
            "Validate multi-document YAML or JSON manifests (the files you would `kubectl apply`) "
            "against the InferencePool (inference.networking.k8s.io/v1), InferenceObjective and "
            "InferenceModelRewrite (inference.networking.x-k8s.io/v1alpha2 or llm-d.ai/v1alpha2) "
            "schemas. Exits 0 when every object is "
            "valid; otherwise prints one line per problem - file, document number (1-based), "
            "kind/name, field path and reason - and exits 1."
        ),
    )
    validate.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help="a manifest file (repeat for several; duplicates are checked across all)",
    )
    validate.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    validate.add_argument(
        "--strict",
        action="store_true",
        help="unknown fields are errors (kubectl --validate=strict); by default they are "
        "pruned with a warning, as the API server does for its clients",
    )
    validate.set_defaults(func=_validate)


def _crds(args: argparse.Namespace) -> int:
    from endpoint_picker.api import crds

    if args.output_dir:
        for path in crds.write(args.output_dir):
            print(path)
    else:
        sys.stdout.write(crds.render_all())
    return 0


def _validate(args: argparse.Namespace) -> int:
    from endpoint_picker.api.manifests import load_manifests

    result = load_manifests(args.files, strict=args.strict)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in result.errors:
        print(error, file=sys.stderr)
    if not args.quiet:
        for doc in result.documents:
            meta = doc.obj.metadata
            print(f"{doc.file}: document {doc.index} ({doc.obj.kind}/{meta.name}): valid")
    if result.errors:
        print(f"{len(result.errors)} error(s) in {len(args.files)} file(s)", file=sys.stderr)
        return 1
    return 0

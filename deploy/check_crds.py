"""Validate custom resources of deploy/k8s/ against their CRD schemas (kubernetes-validate knows only
Kubernetes' own kinds): python deploy/check_crds.py [FILE.yaml ...] (default: every custom resource
in deploy/k8s/*.yaml whose kind has a schema in deploy/k8s/schemas/). Exit 1 naming each problem.

The schemas are CRDs' openAPIV3Schema, committed with their source (see each file's $comment). They
are checked strictly: an object with `properties` takes no other key unless the schema says so
(x-kubernetes-preserve-unknown-fields or additionalProperties), as the API server would prune a
misspelt key (`cooldownPeriods`) silently. Needs PyYAML and jsonschema.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

K8S = Path(__file__).resolve().parent / "k8s"
SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): K8S / "schemas" / "keda-scaledobject.json"}


def strict(schema: Any) -> Any:
    """A copy in which every object schema with `properties` refuses keys it does not list."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def schema_for(api_version: str, kind: str) -> dict[str, Any] | None:
    path = SCHEMAS.get((api_version, kind))
    if path is None:
        return None
    schema = json.loads(path.read_text())
    schema.pop("$comment", None)
    schema.pop("x-source", None)
    # The API server checks metadata itself; the CRD schema says only `type: object`.
    return strict(copy.deepcopy(schema))


def problems(doc: dict[str, Any]) -> list[str]:
    schema = schema_for(doc.get("apiVersion", ""), doc.get("kind", ""))
    if schema is None:
        return [f"no schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    validator = jsonschema.Draft7Validator(schema)
    found = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "(top)"
        found.append(f"{where}: {error.message}")
    return found


def check_files(paths: list[Path]) -> tuple[int, list[str]]:
    checked, report = 0, []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or (doc.get("apiVersion"), doc.get("kind")) not in SCHEMAS:
                continue
            checked += 1
            report += [f"{path}: {doc['kind']} {doc.get('metadata', {}).get('name')}: {p}" for p in problems(doc)]
    return checked, report


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(K8S.glob("*.yaml"))
    checked, report = check_files(paths)
    for line in report:
        print(line)
    if checked == 0:
        print("no custom resource with a known schema in", ", ".join(map(str, paths)))
        return 1
    print(f"{checked} custom resource(s) checked, {len(report)} problem(s)")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

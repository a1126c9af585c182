#!/usr/bin/env python3
"""Validates custom resources against their CRD's OpenAPI schema, strictly: as the API server
does with `fieldValidation=Strict`, a field the schema does not declare is an error.

    validate_custom_resources.py CRD.yaml RESOURCE.yaml...
"""
import sys

import jsonschema
import yaml


def strict(schema):
    """The schema with unknown fields refused wherever it declares properties."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    return schema


def main(crd_path, resources):
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    schemas = {
        (f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"]): strict(
            v["schema"]["openAPIV3Schema"]
        )
        for v in crd["spec"]["versions"]
    }
    failed = 0
    for path in resources:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                key = (doc.get("apiVersion"), doc.get("kind"))
                schema = schemas.get(key)
                if schema is None:
                    print(f"ERROR {path}: no schema for {key}")
                    failed += 1
                    continue
                # apiVersion, kind and metadata are the API server's to check.
                schema = dict(
                    schema,
                    properties=dict(
                        schema["properties"],
                        apiVersion={"type": "string"},
                        kind={"type": "string"},
                        metadata={"type": "object"},
                    ),
                )
                errors = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
                name = doc.get("metadata", {}).get("name")
                for e in errors:
                    print(f"ERROR {path} {key[1]}/{name}: {'.'.join(map(str, e.path))}: {e.message}")
                failed += len(errors)
                if not errors:
                    print(f"INFO {path} {key[1]}/{name} fits the CRD")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))

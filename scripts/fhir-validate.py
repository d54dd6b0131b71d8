#!/usr/bin/env python3
"""Every Bundle the HL7v2 -> FHIR goldens expect, checked by an implementation that is not
ours: Python's fhir.resources (R4B models, pydantic). Each Bundle, and each resource in it by its
own type, must validate: known elements only, the right types and cardinalities. Run by
scripts/test-all in a venv of its own (target/fhir-resources).

usage: scripts/fhir-validate.py [FILE.json ...]   (default: engine/fhir/tests/golden/*.json)
"""
import glob
import json
import sys

from fhir.resources.R4B import get_fhir_model_class

files = sys.argv[1:] or sorted(glob.glob("engine/fhir/tests/golden/*.json"))
if not files:
    sys.exit("no golden Bundles found")
failed = 0
resources = 0
for path in files:
    with open(path, encoding="utf-8") as f:
        bundle = json.load(f)
    try:
        get_fhir_model_class("Bundle").model_validate(bundle)
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            resources += 1
    except Exception as e:  # pydantic's ValidationError, or an unknown resource type
        failed += 1
        print(f"{path}: {e}", file=sys.stderr)
print(f"{len(files)} Bundle(s), {resources} resource(s): {failed} invalid (fhir.resources R4B)")
sys.exit(1 if failed else 0)

#!/usr/bin/env python3
"""Validates AWS Chatbot custom notifications against the documented schema
(scripts/schemas/chatbot-custom-notification.schema.json). Reads one JSON document per
line on stdin; prints every violation and exits 1 if any. Used by the Rust tests."""
import json
import sys
from pathlib import Path

try:
    import jsonschema
except ImportError:
    sys.exit("jsonschema is missing: run scripts/test, which installs scripts/requirements-test.txt into .venv")

schema = json.loads((Path(__file__).resolve().parent / "schemas" / "chatbot-custom-notification.schema.json").read_text())
validator = jsonschema.Draft202012Validator(schema)
bad = 0
count = 0
for n, line in enumerate(sys.stdin, 1):
    if not line.strip():
        continue
    count += 1
    for error in validator.iter_errors(json.loads(line)):
        bad += 1
        print(f"document {n}: {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}")
if count == 0:
    sys.exit("no document to validate")
print(f"{count} documents checked, {bad} violations")
sys.exit(1 if bad else 0)

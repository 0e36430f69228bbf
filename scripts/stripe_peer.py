#!/usr/bin/env python3
"""The official Stripe library as a signature peer for revguard's conformance tests.

Reads {"op": "sign" | "verify", "cases": [...]} as JSON on stdin and writes a JSON list:
  sign:   case {"body", "secret", "timestamp"} -> the Stripe-Signature header stripe makes
  verify: case {"body", "secret", "header"}    -> {"ok": true, "id": …} or {"ok": false, "error": …}
"""
import json
import sys

try:
    import stripe
except ImportError:
    sys.exit("the Python package `stripe` is missing: run scripts/test, or pip install stripe")


def main():
    request = json.load(sys.stdin)
    out = []
    for case in request["cases"]:
        if request["op"] == "sign":
            out.append(stripe.WebhookSignature.generate_signature_header(
                case["body"], case["secret"], timestamp=case["timestamp"]))
        elif request["op"] == "verify":
            try:
                event = stripe.Webhook.construct_event(case["body"], case["header"], case["secret"])
                out.append({"ok": True, "id": event["id"]})
            except stripe.SignatureVerificationError as e:
                out.append({"ok": False, "error": str(e)})
        else:
            sys.exit(f"unknown op {request['op']!r}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes functions/core/tests/data/poisson_tails.json: Poisson tails computed with mpmath
at 60 significant digits, the reference the detector's tails are tested against.
Not run by scripts/test (the file is committed); needs `pip install mpmath`.
   python3 scripts/poisson-reference.py"""
import json
import pathlib

import mpmath

mpmath.mp.dps = 60
out = []
for lam in [0.01, 0.1, 0.3, 1.0, 4.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 5000.0]:
    L = mpmath.mpf(lam)
    # Upper tails P(X >= k) = P(k, λ) (regularised lower incomplete gamma), from near 1
    # down to 1e-300, including k far below λ.
    ks = {1, 2, 3, 5, 10, 20, 40, 80, 160, 400, 1000, 3000}
    ks |= {int(lam * m) + 1 for m in (1, 1.2, 1.5, 2, 3, 5, 10)}
    for k in sorted(ks):
        up = mpmath.gammainc(k, 0, L, regularized=True)
        if up > mpmath.mpf("1e-300"):
            out.append(["upper", k, lam, mpmath.nstr(up, 30)])
    # Lower tails P(X <= k) = Q(k + 1, λ).
    for k in sorted({0, 1, 2, 5} | {int(lam * m) for m in (0.1, 0.3, 0.5, 0.8)}):
        lo = mpmath.gammainc(k + 1, L, mpmath.inf, regularized=True)
        if lo > mpmath.mpf("1e-300"):
            out.append(["lower", k, lam, mpmath.nstr(lo, 30)])
path = pathlib.Path(__file__).resolve().parent.parent / "functions/core/tests/data/poisson_tails.json"
path.write_text(json.dumps(out) + "\n")
print(f"{len(out)} reference tails written to {path.name}")

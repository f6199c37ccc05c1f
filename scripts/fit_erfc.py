#!/usr/bin/env python3
"""Fits the short erfc form that `gaussian_cdf_pdf<true>` (Kernels+Source.swift) uses for GELU in 16-bit precisions.

erfc(z) = t·exp(−z² + P(t)), t = 1 / (1 + z/2), z ≥ 0 (the form of Numerical Recipes' erfcc, whose degree-9 P the fp32
kernels keep). P of degree 5 is fitted by least squares in a Chebyshev basis of t over z in [0, 12]. The kernel
evaluates it in base 2 with h = t/2 = 1/(2 + z): Φ(−|x|) = erfc(z)/2 = h·2^(Q(h) − w), w = x²·log2(e)/2, with
Q(h) = Σ cₖ·2ᵏ·log2(e)·hᵏ; φ(x) = 2^(−w)/√(2π). Prints Q's coefficients (constant first, as the kernel writes them)
and the largest relative and absolute errors of Φ against float64, evaluated in float32 one operation at a time (the
kernel's FMAs round once, so it is, if anything, closer) over |x| ≤ 9; past |x| ≈ 13.2 the kernel's exponential
flushes Φ(−|x|) and φ to zero. Needs numpy and scipy.
"""
import numpy as np
from scipy.special import erfc, ndtr

DEGREE = 5
LOG2E = 1.4426950408889634

z = np.linspace(0, 12, 200001)
t = 1 / (1 + z / 2)
target = np.log(erfc(z) / t) + z * z
cheb = np.polynomial.chebyshev.chebfit(2 * t - 1, target, DEGREE)
power = np.polynomial.Polynomial(np.polynomial.chebyshev.cheb2poly(cheb))(np.polynomial.Polynomial([-1, 2]))
f32 = np.float32
q_coef = [f32(c * 2.0**k * LOG2E) for k, c in enumerate(power.coef)]

x = np.linspace(-9, 9, 400001).astype(f32)
w = (x * x * f32(LOG2E / 2)).astype(f32)
h = (f32(1) / (np.abs(x) * f32(0.70710678118654752) + f32(2))).astype(f32)
q = q_coef[-1]
for c in reversed(q_coef[:-1]):
    q = (h * q + c).astype(f32)
half = (h * np.exp2((q - w).astype(f32))).astype(f32)
cdf = np.where(x >= 0, f32(1) - half, half).astype(np.float64)
ref = ndtr(x.astype(np.float64))
print("Q(h) coefficients, constant first:", ", ".join("%.9g" % c for c in q_coef))
print("largest relative error of Φ: %.3g, absolute: %.3g" % (np.max(np.abs(cdf / ref - 1)), np.max(np.abs(cdf - ref))))

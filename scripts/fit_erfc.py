#!/usr/bin/env python3
"""Fits the short erfc form that `gaussian_cdf_pdf<true>` (Kernels+Source.swift) uses for GELU in 16-bit precisions.

erfc(z) = t·exp(−z² + P(t)), t = 1 / (1 + z/2), z ≥ 0 (the form of Numerical Recipes' erfcc, whose degree-9 P the fp32
kernels keep). P of degree 5 is fitted by least squares in a Chebyshev basis of t over z in [0, 12], then checked as the
kernel computes it (fp32, Horner, exp2) against the standard normal's distribution Φ(x) = erfc(−x/√2)/2 in float64.
Prints the coefficients (constant term first) and the largest relative and absolute errors of Φ. Needs numpy, scipy.
"""
import numpy as np
from scipy.special import erfc, ndtr

DEGREE = 5

z = np.linspace(0, 12, 200001)
t = 1 / (1 + z / 2)
target = np.log(erfc(z) / t) + z * z
cheb = np.polynomial.chebyshev.chebfit(2 * t - 1, target, DEGREE)
power = np.polynomial.Polynomial(np.polynomial.chebyshev.cheb2poly(cheb))(np.polynomial.Polynomial([-1, 2]))
coef = [np.float32(c) for c in power.coef]

f32 = np.float32
x = np.linspace(-9, 9, 400001).astype(f32)
zz = (np.abs(x) * f32(0.70710678118654752)).astype(f32)
tt = (f32(1) / (f32(0.5) * zz + f32(1))).astype(f32)
q = coef[-1]
for c in reversed(coef[:-1]):
    q = (tt * q + c).astype(f32)
half = (f32(0.5) * tt * np.exp2(((q - zz * zz) * f32(1.4426950408889634)).astype(f32))).astype(f32)
cdf = np.where(x >= 0, f32(1) - half, half).astype(np.float64)
ref = ndtr(x.astype(np.float64))
print("P(t) coefficients, constant first:", ", ".join("%.9g" % c for c in coef))
print("largest relative error of Φ: %.3g, absolute: %.3g" % (np.max(np.abs(cdf / ref - 1)), np.max(np.abs(cdf - ref))))

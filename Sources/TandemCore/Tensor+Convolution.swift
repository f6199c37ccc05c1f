// MARK: - Convolution and pooling

/// Geometry of a 2-D convolution or pooling window over `[N, C, H, W]`.
public struct ConvolutionGeometry: Equatable, Sendable {
    public var batch, channels, height, width: Int
    public var kernelHeight, kernelWidth, stride, padding: Int
    public var outputHeight: Int { (height + 2 * padding - kernelHeight) / stride + 1 }
    public var outputWidth: Int { (width + 2 * padding - kernelWidth) / stride + 1 }
    public var patch: Int { channels * kernelHeight * kernelWidth }
    public var columns: Int { batch * outputHeight * outputWidth }

    /// Output columns `lo..<hi` whose window column `kj` falls inside the input width.
    @inline(__always) func validColumns(_ kj: Int) -> (lo: Int, hi: Int) {
        let first = padding - kj
        let lo = first <= 0 ? 0 : (first + stride - 1) / stride
        let last = width - 1 + padding - kj
        let hi = last < 0 ? 0 : Swift.min(outputWidth, last / stride + 1)
        return (Swift.min(lo, hi), hi)
    }

    /// Unfolds the input into `[patch, N·Ho·Wo]` columns (zeros where the window hangs over the padding).
    func im2col(_ x: UnsafePointer<Float>, _ cols: UnsafeMutablePointer<Float>) {
        let ho = outputHeight, wo = outputWidth, plane = ho * wo
        for c in 0..<channels {
            for ki in 0..<kernelHeight {
                for kj in 0..<kernelWidth {
                    let row = cols + ((c * kernelHeight + ki) * kernelWidth + kj) * columns
                    let (lo, hi) = validColumns(kj)
                    for n in 0..<batch {
                        let src = x + (n * channels + c) * height * width
                        let dst = row + n * plane
                        for oh in 0..<ho {
                            let ih = oh * stride - padding + ki
                            let d = dst + oh * wo
                            guard ih >= 0 && ih < height else { d.initialize(repeating: 0, count: wo); continue }
                            let s = src + ih * width - padding + kj
                            d.initialize(repeating: 0, count: lo)
                            if stride == 1 {
                                (d + lo).update(from: s + lo, count: hi - lo)
                            } else {
                                for ow in lo..<hi { d[ow] = s[ow * stride] }
                            }
                            (d + hi).initialize(repeating: 0, count: wo - hi)
                        }
                    }
                }
            }
        }
    }

    /// Adds columns back into an input-shaped gradient (the adjoint of `im2col`).
    func col2im(_ cols: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>) {
        let ho = outputHeight, wo = outputWidth, plane = ho * wo
        for c in 0..<channels {
            for ki in 0..<kernelHeight {
                for kj in 0..<kernelWidth {
                    let row = cols + ((c * kernelHeight + ki) * kernelWidth + kj) * columns
                    let (lo, hi) = validColumns(kj)
                    for n in 0..<batch {
                        let dst = dx + (n * channels + c) * height * width
                        let src = row + n * plane
                        for oh in 0..<ho {
                            let ih = oh * stride - padding + ki
                            guard ih >= 0 && ih < height else { continue }
                            let d = dst + ih * width - padding + kj, s = src + oh * wo
                            if stride == 1 {
                                for ow in lo..<hi { d[ow] += s[ow] }
                            } else {
                                for ow in lo..<hi { d[ow * stride] += s[ow] }
                            }
                        }
                    }
                }
            }
        }
    }
}

extension Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch's `F.conv2d`): `x` `[N, C, H, W]`,
    /// `weight` `[O, C, kh, kw]`, `bias` `[O]`. Lowered to one GEMM over the whole batch.
    ///
    /// - Complexity: 2·O·C·kh·kw·N·Ho·Wo FLOPs forward, twice that backward.
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) -> Tensor {
        precondition(x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[1],
                     "conv2d: input \(x.shape) and weight \(weight.shape) do not fit")
        let geometry = ConvolutionGeometry(batch: x.shape[0], channels: x.shape[1], height: x.shape[2], width: x.shape[3],
                                           kernelHeight: weight.shape[2], kernelWidth: weight.shape[3], stride: stride, padding: padding)
        precondition(geometry.outputHeight > 0 && geometry.outputWidth > 0, "conv2d: kernel larger than padded input \(x.shape)")
        let outChannels = weight.shape[0], plane = geometry.outputHeight * geometry.outputWidth, n = geometry.batch
        let cols = Tensor(uninitializedShape: [geometry.patch, geometry.columns])
        geometry.im2col(x.pointer, cols.pointer)
        let product = Tensor(uninitializedShape: [outChannels, n, plane])
        Kernels.gemm(m: outChannels, n: geometry.columns, k: geometry.patch, a: weight.pointer, b: cols.pointer, c: product.pointer)
        let out = Tensor(uninitializedShape: [n, outChannels, geometry.outputHeight, geometry.outputWidth])
        for b in 0..<n {
            for o in 0..<outChannels {
                let src = product.pointer + (o * n + b) * plane, dst = out.pointer + (b * outChannels + o) * plane
                let shift = bias?.pointer[o] ?? 0
                for p in 0..<plane { dst[p] = src[p] + shift }
            }
        }
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return Tape.track(out, inputs: inputs) { g, needs in
            let gt = Tensor(uninitializedShape: [outChannels, n, plane])
            Tensor.permute(g.pointer, shape: [n, outChannels, plane], order: [1, 0, 2], into: gt.pointer)
            var grads: [Tensor?] = [nil, nil, nil]
            if needs[1] {
                let dw = Tensor(uninitializedShape: weight.shape)
                Kernels.gemm(transB: true, m: outChannels, n: geometry.patch, k: geometry.columns, a: gt.pointer, b: cols.pointer, c: dw.pointer)
                grads[1] = dw
            }
            if bias != nil && needs[2] {
                let db = Tensor(zeros: [outChannels])
                for o in 0..<outChannels {
                    var s: Float = 0
                    let row = gt.pointer + o * geometry.columns
                    for j in 0..<geometry.columns { s += row[j] }
                    db.pointer[o] = s
                }
                grads[2] = db
            }
            if needs[0] {
                let dcols = Tensor(uninitializedShape: [geometry.patch, geometry.columns])
                Kernels.gemm(transA: true, m: geometry.patch, n: geometry.columns, k: outChannels, a: weight.pointer, b: gt.pointer, c: dcols.pointer)
                let dx = Tensor(zeros: x.shape)
                geometry.col2im(dcols.pointer, dx.pointer)
                grads[0] = dx
            }
            return Array(grads.prefix(inputs.count))
        }
    }

    /// Max pooling over `kernel`×`kernel` windows with `stride` (no padding), as `F.max_pool2d`.
    public func maxPool2d(kernel: Int, stride: Int? = nil) -> Tensor {
        precondition(rank == 4, "maxPool2d needs [N, C, H, W], got \(shape)")
        let s = stride ?? kernel
        let h = shape[2], w = shape[3]
        let ho = (h - kernel) / s + 1, wo = (w - kernel) / s + 1
        precondition(ho > 0 && wo > 0, "maxPool2d: window \(kernel) larger than \(h)×\(w)")
        let planes = shape[0] * shape[1]
        let out = Tensor(uninitializedShape: [shape[0], shape[1], ho, wo])
        var argmax = [Int32](repeating: 0, count: out.count)
        for p in 0..<planes {
            let src = pointer + p * h * w, dst = out.pointer + p * ho * wo
            if kernel == 2 && s == 2 {
                // The common case, unrolled: the first of equal maxima wins, as in PyTorch.
                for oh in 0..<ho {
                    let r0 = src + 2 * oh * w, r1 = r0 + w
                    for ow in 0..<wo {
                        let a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1]
                        var best = a, at = 2 * oh * w + 2 * ow
                        if b > best { best = b; at = 2 * oh * w + 2 * ow + 1 }
                        if c > best { best = c; at = (2 * oh + 1) * w + 2 * ow }
                        if d > best { best = d; at = (2 * oh + 1) * w + 2 * ow + 1 }
                        dst[oh * wo + ow] = best
                        argmax[p * ho * wo + oh * wo + ow] = Int32(at)
                    }
                }
                continue
            }
            for oh in 0..<ho {
                for ow in 0..<wo {
                    var best = -Float.infinity, at = (oh * s) * w + ow * s
                    for ki in 0..<kernel {
                        for kj in 0..<kernel {
                            let i = (oh * s + ki) * w + ow * s + kj
                            if src[i] > best || src[i].isNaN { best = src[i]; at = i }
                        }
                    }
                    dst[oh * wo + ow] = best
                    argmax[p * ho * wo + oh * wo + ow] = Int32(at)
                }
            }
        }
        let inputShape = shape
        return Tape.track(out, inputs: [self]) { g, _ in
            let dx = Tensor(zeros: inputShape)
            for p in 0..<planes {
                for j in 0..<(ho * wo) {
                    dx.pointer[p * h * w + Int(argmax[p * ho * wo + j])] += g.pointer[p * ho * wo + j]
                }
            }
            return [dx]
        }
    }

    /// Mean over the spatial dimensions: `[N, C, H, W]` → `[N, C]`.
    public func globalAveragePool() -> Tensor {
        precondition(rank == 4, "globalAveragePool needs [N, C, H, W], got \(shape)")
        return reshaped([shape[0], shape[1], shape[2] * shape[3]]).mean(axis: 2)
    }
}

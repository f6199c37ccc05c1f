#if canImport(Glibc)
import Glibc
#endif
import Testing
import TandemModels
@testable import TandemCUDA

@Suite("Kernels and the GPU", .serialized)
struct KernelCompileTests {
    /// NVRTC when this host has it (the CUDA toolkit, or `pip install nvidia-cuda-nvrtc`), else nil with a message.
    static func compiler() -> NVRTC? {
        do { return try NVRTC.shared() } catch let error {
            print("skipped: NVRTC is not installed here, so the kernels were not compiled (\(error.description.prefix(120))…)")
            return nil
        }
    }

    @Test("every kernel compiles with NVRTC for Hopper (sm_90) and Ampere (sm_80)", arguments: ["sm_90", "sm_80"])
    func compiles(architecture: String) throws {
        guard let nvrtc = Self.compiler() else { return }
        let cubin = try nvrtc.compile(source: KernelSource.all, name: "tandem_kernels_test", architecture: architecture, cache: false)
        #expect(cubin.count > 10_000)
        #expect(Array(cubin.prefix(4)) == [0x7f, 0x45, 0x4c, 0x46], "a cubin is an ELF file")
        // Every typed kernel exists in each element type.
        let text = String(decoding: cubin.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
        for name in ["bias_act", "cross_entropy", "layernorm_bwd", "causal_softmax", "sgd", "adamw", "im2col", "lstm_cell_bwd",
                     "bias_relu_nchw", "relu_bwd_channel_sums", "bias_relu_maxpool", "maxpool_relu_bwd_sums", "gemm_tn_small"] {
            for suffix in ["_f32", "_bf16", "_f16"] { #expect(text.contains(name + suffix), "\(name + suffix) missing") }
        }
    }

    @Test("a compile error names the program and carries NVRTC's log")
    func compileError() throws {
        guard let nvrtc = Self.compiler() else { return }
        do {
            _ = try nvrtc.compile(source: "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }", name: "broken_kernel",
                                  architecture: "sm_90", cache: false)
            Issue.record("a broken kernel compiled")
        } catch let error {
            #expect(error.description.contains("broken_kernel"))
            #expect(error.description.contains("undefined_name"))
        }
    }

    @Test("the compiled kernels are cached on disk and read back")
    func diskCache() throws {
        guard let nvrtc = Self.compiler() else { return }
        let dir = "/tmp/tandem-kernel-cache-\(getpid())"
        setenv("TANDEM_KERNEL_CACHE", dir, 1)
        defer { unsetenv("TANDEM_KERNEL_CACHE") }
        let source = "extern \"C\" __global__ void twice(float* x) { x[threadIdx.x] *= 2.f; }"
        let first = try nvrtc.compile(source: source, name: "twice", architecture: "sm_90")
        let files = NativeLibrary.entries(dir).filter { $0.hasSuffix(".cubin") }
        #expect(files.count == 1)
        let second = try nvrtc.compile(source: source, name: "twice", architecture: "sm_90")
        #expect(first == second)
        for f in NativeLibrary.entries(dir) { unlink(dir + "/" + f) }
        rmdir(dir)
    }

    @Test("the GPU self-test passes on a GPU (skips with a message without one)")
    func gpuSelfTest() throws {
        let gpu: CUDAContext
        do { gpu = try CUDAContext(device: 0) } catch let error {
            print("skipped: no usable GPU here (\(String(describing: error).prefix(160)))")
            return
        }
        let test = GPUSelfTest(gpu: gpu)
        try test.runAll(models: [.mlp])
        for c in test.failures { Issue.record("\(c.name) [\(c.precision)]: error \(c.error) > \(c.tolerance) \(c.note)") }
    }
}

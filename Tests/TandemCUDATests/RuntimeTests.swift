#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import TandemCUDA

// MARK: - A fake device for the allocator

/// Hands out increasing addresses up to `capacity` bytes; records every call.
final class FakeBacking: DeviceBacking {
    let capacity: Int
    var used = 0
    var next: DevicePointer = 0x1000
    var live: [DevicePointer: Int] = [:]
    var allocations = 0, frees = 0
    init(capacity: Int) { self.capacity = capacity }
    func allocate(bytes: Int) throws(CUDAError) -> DevicePointer? {
        guard used + bytes <= capacity else { return nil }
        used += bytes
        allocations += 1
        let p = next
        next += DevicePointer(bytes)
        live[p] = bytes
        return p
    }
    func free(_ pointer: DevicePointer) {
        frees += 1
        used -= live.removeValue(forKey: pointer)!
    }
    func memoryInfo() -> (free: Int, total: Int) { (capacity - used, capacity) }
}

@Suite("Device allocator")
struct AllocatorTests {
    @Test("size classes round up to 512 B below 1 MiB and to 2 MiB above", arguments: [
        (1, 512), (512, 512), (513, 1024), (1 << 20, 1 << 20), ((1 << 20) + 1, 2 << 20), ((2 << 20) + 1, 4 << 20), (0, 512),
    ])
    func sizeClasses(bytes: Int, expected: Int) {
        #expect(DeviceAllocator.sizeClass(bytes) == expected)
    }

    @Test("freed blocks are reused: the steady state never reaches the backing allocator")
    func reuse() throws {
        let fake = FakeBacking(capacity: 1 << 30)
        let allocator = DeviceAllocator(backing: fake)
        for _ in 0..<10 {
            let a = try allocator.allocate(bytes: 1000, category: .activations)
            let b = try allocator.allocate(bytes: 3 << 20, category: .activations)
            allocator.free(a)
            allocator.free(b)
        }
        #expect(fake.allocations == 2)
        #expect(allocator.backingAllocations == 2)
        #expect(allocator.totalInUse == 0)
        #expect(allocator.reserved == 1024 + (4 << 20))
    }

    @Test("bytes in use and peak are kept per category")
    func categories() throws {
        let allocator = DeviceAllocator(backing: FakeBacking(capacity: 1 << 30))
        let p = try allocator.allocate(bytes: 4096, category: .parameters)
        let g = try allocator.allocate(bytes: 4096, category: .gradients)
        let a1 = try allocator.allocate(bytes: 10_000, category: .activations)
        let a2 = try allocator.allocate(bytes: 10_000, category: .activations)
        #expect(allocator.inUse[.parameters] == 4096)
        #expect(allocator.inUse[.gradients] == 4096)
        #expect(allocator.inUse[.activations] == 2 * 10240)
        allocator.free(a1)
        allocator.free(a2)
        #expect(allocator.inUse[.activations] == 0)
        #expect(allocator.peak[.activations] == 2 * 10240)
        #expect(allocator.peakTotal == 2 * 4096 + 2 * 10240)
        allocator.resetPeak()
        #expect(allocator.peak[.activations] == 0)
        #expect(allocator.peakTotal == 2 * 4096)
        allocator.free(p)
        allocator.free(g)
    }

    @Test("live pointers are exactly the blocks handed out and not freed (what a trainer gives back)")
    func livePointers() throws {
        let allocator = DeviceAllocator(backing: FakeBacking(capacity: 1 << 30))
        let a = try allocator.allocate(bytes: 100, category: .parameters)
        let before = allocator.livePointers
        let b = try allocator.allocate(bytes: 200, category: .activations), c = try allocator.allocate(bytes: 5 << 20, category: .gradients)
        let owned = allocator.livePointers.subtracting(before)
        #expect(owned == [b, c])
        for p in owned { allocator.free(p) }
        #expect(allocator.livePointers == [a])
        #expect(allocator.inUse[.activations] == 0 && allocator.inUse[.gradients] == 0)
        // The next allocations of those sizes reuse the freed blocks.
        #expect(try allocator.allocate(bytes: 200, category: .activations) == b)
    }

    @Test("an out-of-memory request releases the cache, retries, then names the bytes asked and free")
    func outOfMemory() throws {
        let fake = FakeBacking(capacity: 8 << 20)
        let allocator = DeviceAllocator(backing: fake)
        let a = try allocator.allocate(bytes: 4 << 20, category: .activations)
        allocator.free(a)   // cached, still held from the fake
        // 6 MiB fits only once the cached 4 MiB block is handed back.
        let b = try allocator.allocate(bytes: 6 << 20, category: .parameters)
        #expect(fake.frees == 1)
        do {
            _ = try allocator.allocate(bytes: 3 << 20, category: .optimizer)
            Issue.record("expected an out-of-memory error")
        } catch let error {
            #expect(error == .outOfMemory(requested: 3 << 20, free: 2 << 20, total: 8 << 20, category: "optimizer"))
            #expect(error.description.contains("asked for 3145728 bytes"))
            #expect(error.description.contains("2097152 bytes (2.0 MiB) free"))
        }
        allocator.free(b)
    }
}

// MARK: - Missing libraries

@Suite("Native libraries", .serialized)
struct LibraryTests {
    @Test("a missing library is a clear error naming what was searched and what to install")
    func missing() throws {
        // The same restriction TANDEM_CUDA_LIBS makes, passed directly so tests running beside this one are unaffected.
        let empty = "/tmp/tandem-empty-\(getpid())"
        mkdir(empty, 0o755)
        defer { rmdir(empty) }
        for (names, what) in [(["libcuda.so.1"], "the CUDA driver"), (CuBLAS.names, "cuBLAS"), (NVRTC.names, "NVRTC"),
                              (CuDNN.names, "cuDNN")] {
            do {
                _ = try NativeLibrary.open(names: names, what: what, hint: "Install it.", directories: [empty])
                Issue.record("\(what) opened from an empty folder")
            } catch let error {
                let text = error.description
                #expect(text.contains(what) && text.contains(empty) && text.contains("Install it."), "\(text)")
            }
        }
    }

    @Test("the kernel cache key changes with every byte of the input")
    func cacheKey() {
        let a = KernelCache.key("source sm_90"), b = KernelCache.key("source sm_80"), c = KernelCache.key("source sm_90")
        #expect(a != b)
        #expect(a == c)
        #expect(a.count == 32)
    }
}

@Suite("What doctor reports")
struct InventoryTests {
    @Test("every CUDA library gets a line: where it was found and its version, or what to install")
    func lines() {
        let lines = CUDAInventory.report()
        for library in ["CUDA driver", "NVRTC", "cuBLAS", "cuDNN", "NCCL"] {
            let line = lines.first { $0.hasPrefix(library + ":") }
            #expect(line != nil, "no line for \(library)")
            if let line {
                let found = line.contains("(") && !line.contains("not found")
                #expect(found || line.contains("Install") || line.contains("pip install"), "\(line)")
            }
        }
        // And which path convolutions and the LSTM take.
        #expect(lines.contains { $0.contains("convolutions") }, "\(lines)")
    }
}

@Suite("cuDNN's LSTM weight order")
struct LSTMPlacementTests {
    @Test("recurrent matrices first (layer by layer, input before recurrent), then biases, then the rest; every parameter once")
    func placement() {
        let names = ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                     "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1", "head.weight", "head.bias"]
        let order = LSTMNetwork.placement(names).map { names[$0] }
        #expect(order == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1",
                          "rnn.bias_ih_l0", "rnn.bias_hh_l0", "rnn.bias_ih_l1", "rnn.bias_hh_l1", "head.weight", "head.bias"])
        #expect(Set(LSTMNetwork.placement(names)) == Set(names.indices))
    }
}

@Suite("Kernel defines")
struct KernelDefinesTests {
    @Test("TANDEM_KERNEL_DEFINES: NAME or NAME=VALUE tokens become -D options; anything else is an error that names it")
    func defines() throws {
        #expect(try CUDAContext.kernelDefines(nil) == [])
        #expect(try CUDAContext.kernelDefines("") == [])
        #expect(try CUDAContext.kernelDefines("LNB_ROWS=2  FA_BWD_BLOCKS=4 _X") == ["-DLNB_ROWS=2", "-DFA_BWD_BLOCKS=4", "-D_X"])
        #expect(try CUDAContext.kernelDefines("A=b=c") == ["-DA=b=c"])
        #expect(CUDAContext.integerConstants(["-DCE_VECTORS=1", "-D_X", "-DA=b=c", "-DN=2", "-DN=3"]) == ["CE_VECTORS": 1, "N": 3])
        // The launch's default of a constant whose value shapes it is the kernel source's.
        #expect(KernelSource.all.contains("#define CE_VECTORS \(GPUTrainer.crossEntropyVectors)\n"))
        for bad in ["-G", "2X=1", "=3", "LNB-ROWS=2", "Ä=1"] {
            #expect(throws: CUDAError.self) { try CUDAContext.kernelDefines(bad) }
            do { _ = try CUDAContext.kernelDefines("OK=1 " + bad) } catch {
                #expect("\(error)".contains("'\(bad)'"))
            }
        }
    }
}

@Suite("Programmatic dependent launch")
struct ProgrammaticLaunchTests {
    @Test("every kernel's first statement is PDL_ENTRY(), so launching any of them programmatically is safe")
    func everyKernelWaits() throws {
        let source = KernelSource.all
        var kernels = 0, searchFrom = source.startIndex
        while let global = source.range(of: "__global__", range: searchFrom..<source.endIndex) {
            // The body's opening brace; a ';' before it would be a declaration, which the source has none of.
            let brace = try #require(source[global.upperBound...].firstIndex(of: "{"))
            #expect(!source[global.upperBound..<brace].contains(";"), "a kernel declared without a body")
            let body = source[source.index(after: brace)...].drop { $0 == " " }
            #expect(body.hasPrefix("PDL_ENTRY();"), "kernel at '\(source[global.upperBound...].prefix(80))' does not start with PDL_ENTRY()")
            kernels += 1
            searchFrom = brace
        }
        #expect(kernels >= 20)
        #expect(source.contains("griddepcontrol.wait;"))
    }

    @Test("programmatic launches need compute capability 9.0, cuLaunchKernelEx and CUDA 12.3; TANDEM_PDL=0 turns them off")
    func rule() {
        func off(_ env: String?, _ ex: Bool = true, _ cuda: (Int, Int) = (13, 0), _ cc: (Int, Int) = (9, 0)) -> String? {
            CUDAContext.programmaticLaunchOff(environment: env, hasLaunchEx: ex, cudaVersion: cuda, computeCapability: cc)
        }
        #expect(off(nil) == nil)
        #expect(off("1") == nil)
        #expect(off(nil, true, (12, 3), (10, 0)) == nil)
        #expect(off("0")?.contains("TANDEM_PDL=0") == true)
        #expect(off(nil, true, (13, 0), (8, 0))?.contains("compute capability 9.0 (this GPU has 8.0)") == true)
        #expect(off(nil, false)?.contains("no cuLaunchKernelEx") == true)
        #expect(off(nil, true, (12, 2))?.contains("this one has CUDA 12.2") == true)
    }
}

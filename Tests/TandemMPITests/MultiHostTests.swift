import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Several hosts for real: network namespaces joined by veth links

/// Test hosts made inside the test: one network namespace each, all on a private subnet,
/// joined by veth pairs to the first (a star), loopback up in each. Open MPI's `mpirun` runs
/// on the first and places ranks on the others through an rsh agent that runs
/// `ip netns exec HOST unshare --uts …` (each host its own name, so Open MPI treats them as
/// separate nodes and talks TCP between them); `oob_tcp_if_include`/`btl_tcp_if_include`
/// keep all traffic on the test subnet.
struct TestHosts {
    let names: [String]
    let addresses: [String]
    let links: [String]          // the far end of each veth pair, inside host i ≥ 1
    let subnet: String
    let agent: String
    let scratch: Scratch

    /// Why these tests cannot run here, or nil when they can.
    static let unavailable: String? = {
        if getuid() != 0 { return "not root" }
        guard Tools.find("ip") != nil, Tools.find("unshare") != nil else { return "`ip` or `unshare` is not installed" }
        guard Implementation.installed.contains(where: { $0.name == "Open MPI" }) else { return "Open MPI is not installed" }
        let probe = "tdm-probe-\(getpid())"
        guard (try? runCommand(["ip", "netns", "add", probe]))?.status == 0 else { return "`ip netns add` is not permitted here" }
        _ = try? runCommand(["ip", "netns", "del", probe])
        guard (try? runCommand(["unshare", "--uts", "true"]))?.status == 0 else { return "`unshare --uts` is not permitted here" }
        return nil
    }()

    static func skipMessage() -> Bool {
        if let reason = unavailable { print("MPI multi-host tests skipped: \(reason) (they need root and `ip netns`)") }
        return unavailable != nil
    }

    init(count: Int) throws {
        let tag = Int(getpid()) % 100_000
        let octet = 20 + Int(getpid()) % 200
        subnet = "10.77.\(octet).0/24"
        names = (1...count).map { "tdm\(tag)h\($0)" }
        addresses = (1...count).map { "10.77.\(octet).\($0)" }
        links = (1...count).map { "tdm\(tag)v\($0)" }
        scratch = try Scratch()
        agent = scratch.file("agent.sh")
        var cases = ""
        for (name, address) in zip(names, addresses) { cases += "  \(address)) ns=\(name);;\n" }
        let script = """
            #!/bin/sh
            # rsh agent for the test hosts: run the command inside the host's network namespace,
            # under its own host name.
            host="$1"; shift
            case "$host" in
            \(cases)  *) echo "agent: unknown test host $host" >&2; exit 1;;
            esac
            exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"

            """
        try script.write(toFile: agent, atomically: true, encoding: .utf8)
        chmod(agent, 0o755)
        do {
            for name in names { try Self.ip(["netns", "add", name]) }
            for name in names { try Self.ip(["-n", name, "link", "set", "lo", "up"]) }
            for i in 1..<count {
                let near = "tdm\(tag)u\(i + 1)"
                try Self.ip(["link", "add", near, "type", "veth", "peer", "name", links[i]])
                try Self.ip(["link", "set", near, "netns", names[0]])
                try Self.ip(["link", "set", links[i], "netns", names[i]])
                // The hub's ends carry its address (a /32 each side, routed per peer).
                try Self.ip(["-n", names[0], "addr", "add", "\(addresses[0])/32", "dev", near])
                try Self.ip(["-n", names[i], "addr", "add", "\(addresses[i])/24", "dev", links[i]])
                try Self.ip(["-n", names[0], "link", "set", near, "up"])
                try Self.ip(["-n", names[i], "link", "set", links[i], "up"])
                try Self.ip(["-n", names[0], "route", "add", "\(addresses[i])/32", "dev", near])
                try Self.ip(["-n", names[i], "route", "replace", subnet, "dev", links[i], "src", addresses[i]])
            }
        } catch {
            remove()
            throw error
        }
    }

    static func ip(_ arguments: [String]) throws {
        let run = try runCommand(["ip"] + arguments, timeout: 20)
        guard run.status == 0 else { throw HostError(message: "ip \(arguments.joined(separator: " ")) failed: \(run.output)") }
    }

    struct HostError: Error, CustomStringConvertible { var message: String; var description: String { message } }

    /// Kills whatever still runs inside the hosts, then deletes them (and their links).
    func remove() {
        for name in names {
            if let pids = try? runCommand(["ip", "netns", "pids", name], timeout: 10) {
                for pid in pids.output.split(whereSeparator: \.isNewline).compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
            }
            _ = try? runCommand(["ip", "netns", "del", name], timeout: 10)
        }
        scratch.remove()
    }

    /// Bytes sent so far by host `i`'s end of its link.
    func sentBytes(_ i: Int) throws -> Int {
        let run = try runCommand(["ip", "netns", "exec", names[i], "cat", "/sys/class/net/\(links[i])/statistics/tx_bytes"])
        return Int(run.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// `mpirun` on the first host, one rank on each host; every rank's output in `outputs`.
    func mpirunCommand(_ arguments: [String], outputs: String, recovery: Bool = false) throws -> [String] {
        let tandem = try Tools.requireTandem()
        let launcher = try #require(Implementation.openMPI.launcherPath)
        return ["ip", "netns", "exec", names[0], launcher, "--allow-run-as-root", "--oversubscribe",
                "--host", addresses.map { "\($0):1" }.joined(separator: ","), "-np", "\(names.count)",
                "--mca", "plm_rsh_agent", agent, "--mca", "routed", "direct",
                "--mca", "oob_tcp_if_include", subnet, "--mca", "btl_tcp_if_include", subnet, "--mca", "btl", "self,tcp",
                "--output-filename", outputs, "-x", "TANDEM_MPI=libmpi.so.40"]
            + (recovery ? ["--enable-recovery"] : []) + [tandem] + arguments
    }

    /// What rank `rank` printed on standard error (Open MPI's `--output-filename` layout).
    static func rankOutput(_ outputs: String, rank: Int) -> String {
        guard let jobs = try? FileManager.default.contentsOfDirectory(atPath: outputs) else { return "" }
        return jobs.map { job in
            (try? String(contentsOfFile: "\(outputs)/\(job)/rank.\(rank)/stderr", encoding: .utf8)) ?? ""
        }.joined()
    }
}

/// A command started in the background.
final class Background {
    let process = Process()
    let log: String

    init(_ command: [String], log: String) throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
    process.executableURL = URL(fileURLWithPath: command[0].contains("/") ? command[0] : Tools.find(command[0]) ?? command[0])
        process.arguments = Array(command.dropFirst())
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        var env = ProcessInfo.processInfo.environment
        for key in env.keys where key.hasPrefix("OMPI_") || key.hasPrefix("PMI_") || key.hasPrefix("PMIX_") { env[key] = nil }
        process.environment = env
        try process.run()
        try? handle.close()
    }

    /// Kills the whole process group.
    func stop() {
        if process.isRunning { kill(-process.processIdentifier, SIGKILL); kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
}

/// Waits until `condition` holds or `seconds` pass; returns the seconds it took, or nil.
func waitFor(_ seconds: Double, _ condition: () -> Bool) -> Double? {
    let start = Date()
    while Date().timeIntervalSince(start) < seconds {
        if condition() { return Date().timeIntervalSince(start) }
        usleep(100_000)
    }
    return nil
}

@Suite(.serialized) struct MultiHostTests {
    let digits = Tools.root.appendingPathComponent("datasets/digits").path

    /// Two ranks on two hosts train to the same weights as two threads; the gradients
    /// crossed the link (its byte counter moved by at least one gradient per step).
    @Test func trainingAcrossHostsMatchesThreads() throws {
        if TestHosts.skipMessage() { return }
        let hosts = try TestHosts(count: 2)
        defer { hosts.remove() }
        let common = ["train", "--model", "mlp", "--data", digits, "--hidden", "128,96", "--steps", "12", "--batch", "8", "--lr", "0.05", "--quiet"]
        let threads = try runCommand([try Tools.requireTandem()] + common + ["--workers", "2", "--save", hosts.scratch.file("threads.safetensors")])
        #expect(threads.status == 0, "\(threads)")
        let before = try hosts.sentBytes(1)
        let run = try runCommand(try hosts.mpirunCommand(common + ["--backend", "mpi", "--save", hosts.scratch.file("hosts.safetensors")],
                                                         outputs: hosts.scratch.file("out")), timeout: 120)
        #expect(run.status == 0 && !run.timedOut, "\(run)")
        let sent = try hosts.sentBytes(1) - before
        let parameters = 64 * 128 + 128 + 128 * 96 + 96 + 96 * 10 + 10
        #expect(sent >= 12 * parameters * 4, "host 2 sent only \(sent) bytes over its link; 12 steps need \(12 * parameters * 4)")
        let a = try Data(contentsOf: URL(fileURLWithPath: hosts.scratch.file("threads.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: hosts.scratch.file("hosts.safetensors")))
        #expect(a == b, "weights trained across the two hosts differ from two threads'")
    }

    /// A link cut mid-run: both sides report a timeout naming the other, within the timeout.
    @Test func cutLinkIsReportedOnBothSides() throws {
        if TestHosts.skipMessage() { return }
        let hosts = try TestHosts(count: 2)
        defer { hosts.remove() }
        let outputs = hosts.scratch.file("out")
        let job = try Background(try hosts.mpirunCommand(["train", "--backend", "mpi", "--model", "mlp", "--data", digits, "--hidden", "64,64",
                                                          "--steps", "100000", "--batch", "16", "--timeout", "3"], outputs: outputs),
                                 log: hosts.scratch.file("mpirun.log"))
        defer { job.stop() }
        // Running: rank 0 prints progress once a second.
        let started = waitFor(60) { TestHosts.rankOutput(outputs, rank: 0).contains("step ") }
        try #require(started != nil, "the job did not start: \(job.output)")
        try TestHosts.ip(["-n", hosts.names[1], "link", "set", hosts.links[1], "down"])
        let reported = waitFor(20) {
            TestHosts.rankOutput(outputs, rank: 0).contains("timed out after 3.0 s: rank 1 did not arrive")
                && TestHosts.rankOutput(outputs, rank: 1).contains("timed out after 3.0 s: rank 0 did not arrive")
        }
        #expect(reported != nil, "rank 0: \(TestHosts.rankOutput(outputs, rank: 0).suffix(600))\nrank 1: \(TestHosts.rankOutput(outputs, rank: 1).suffix(600))\nmpirun: \(job.output)")
        if let reported { #expect(reported < 3 + 7, "the reports came \(reported) s after the cut") }
    }

    /// A host's rank killed mid-run: the rank on the other host names it within the timeout.
    @Test func killedRankOnAnotherHostIsNamed() throws {
        if TestHosts.skipMessage() { return }
        let hosts = try TestHosts(count: 2)
        defer { hosts.remove() }
        let outputs = hosts.scratch.file("out")
        let job = try Background(try hosts.mpirunCommand(["train", "--backend", "mpi", "--model", "mlp", "--data", digits, "--hidden", "64,64",
                                                          "--steps", "100000", "--batch", "16", "--timeout", "3"], outputs: outputs, recovery: true),
                                 log: hosts.scratch.file("mpirun.log"))
        defer { job.stop() }
        let started = waitFor(60) { TestHosts.rankOutput(outputs, rank: 0).contains("step ") }
        try #require(started != nil, "the job did not start: \(job.output)")
        let pids = try runCommand(["ip", "netns", "pids", hosts.names[1]]).output.split(whereSeparator: \.isNewline).compactMap { Int32($0) }
        let ranks = pids.filter { pid in
            ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").hasPrefix("tandem")
        }
        try #require(ranks.count == 1, "expected one tandem process on host 2, found \(ranks)")
        kill(ranks[0], SIGKILL)
        // Rank 0 either times out waiting for rank 1, or its transport reports rank 1's
        // connection reset first, or the launcher tears the job down and rank 0 says which
        // rank its collective was waiting for; each names rank 1. Under load Open MPI 4.1's
        // recovery can fail instead ("PMIX ERROR: BAD-PARAM … pmix_event_notification.c")
        // and end the whole job, survivors included, before they report: the job still ends,
        // it does not hang, and that is what is checked then.
        func named() -> Bool {
            let output = TestHosts.rankOutput(outputs, rank: 0)
            return output.contains("timed out after 3.0 s: rank 1 did not arrive") || output.contains("the message from rank 1 failed")
                || output.contains("the message to rank 1 failed") || output.contains("still waiting for rank 1 (it probably failed)")
        }
        let reported = waitFor(20) { named() || !job.process.isRunning }
        let endedByLauncher = reported != nil && !named() && job.output.contains("PMIX ERROR: BAD-PARAM")
        #expect(reported != nil && (named() || endedByLauncher), "rank 0: \(TestHosts.rankOutput(outputs, rank: 0).suffix(600))\nmpirun: \(job.output)")
        if let reported { #expect(reported < 3 + 7, "the report came \(reported) s after the kill") }
    }
}

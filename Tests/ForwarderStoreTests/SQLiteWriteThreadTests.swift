@testable import ForwarderStore
import Foundation
import Synchronization
import Testing
import TestSupport

@Suite("SQLite write thread")
struct SQLiteWriteThreadTests {
    struct Refused: Error, Equatable { var n: Int }

    @Test("a job runs on the write thread, returns its value or rethrows its error to the caller")
    func runsThere() throws {
        let writer = try SQLiteWriteThread()
        #expect(!writer.isCurrent)
        let caller = pthread_self()
        let (onWriter, onCaller) = try writer.run { (writer.isCurrent, pthread_equal(pthread_self(), caller) != 0) }
        #expect(onWriter && !onCaller)
        #expect(throws: Refused(n: 7)) { try writer.run { () throws -> Int in throw Refused(n: 7) } }
        #expect(try writer.run { 42 } == 42)  // still serving after an error
    }

    @Test("jobs from four threads run one at a time, each exactly once, and every caller gets its own result")
    func serialises() throws {
        let writer = try SQLiteWriteThread()
        let inside = Atomic<Int>(0), overlapped = Atomic<Bool>(false), ran = Atomic<Int>(0), wrong = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            for i in 0..<250 {
                let value = try? writer.run { () -> Int in
                    if inside.add(1, ordering: .relaxed).newValue > 1 { overlapped.store(true, ordering: .relaxed) }
                    ran.add(1, ordering: .relaxed)
                    inside.subtract(1, ordering: .relaxed)
                    return thread * 1_000 + i
                }
                if value != thread * 1_000 + i { wrong.add(1, ordering: .relaxed) }
            }
        }
        #expect(ran.load(ordering: .relaxed) == 1_000 && wrong.load(ordering: .relaxed) == 0 && !overlapped.load(ordering: .relaxed))
    }

    @Test("a real transaction run there commits on the caller's connection; a throwing one rolls back")
    func transactions() throws {
        let directory = TemporaryDirectory()
        let writer = try SQLiteWriteThread()
        let connection = try SQLiteConnection(path: directory.path + "/w.sqlite")
        try connection.execute("CREATE TABLE t (v INTEGER)")
        try writer.run { try connection.writeTransaction { try connection.execute("INSERT INTO t VALUES (1)") } }
        #expect(throws: Refused(n: 1)) {
            try writer.run { try connection.writeTransaction { try connection.execute("INSERT INTO t VALUES (2)"); throw Refused(n: 1) } }
        }
        let count = try connection.statement("SELECT count(*), sum(v) FROM t")
        #expect(try count.step() && count.int(0) == 1 && count.int(1) == 1)
        count.reset()
    }
}

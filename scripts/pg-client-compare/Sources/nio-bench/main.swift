import PostgresNIO
import Logging
import Foundation

func rssKB() -> Int { var u = rusage(); getrusage(RUSAGE_SELF.rawValue, &u); return u.ru_maxrss }
let port = Int(CommandLine.arguments[1])!  // the same workload as libpq-bench
let logger = Logger(label: "bench")
let config = PostgresConnection.Configuration(host: "127.0.0.1", port: port, username: "postgres", password: nil, database: "postgres", tls: .disable)
let conn = try await PostgresConnection.connect(configuration: config, id: 1, logger: logger)
try await conn.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS nio_t"), logger: logger)
try await conn.query(PostgresQuery(unsafeSQL: "CREATE TABLE nio_t (id bigserial PRIMARY KEY, event_id text UNIQUE NOT NULL, payload text NOT NULL)"), logger: logger)
let payload = String(repeating: "x", count: 1200)
var start = Date()
let n = 20_000
for i in 0..<n {
    let id = "e\(i)"
    try await conn.query("INSERT INTO nio_t (event_id, payload) VALUES (\(id), \(payload)) ON CONFLICT (event_id) DO NOTHING", logger: logger)
}
let inserts = Double(n) / Date().timeIntervalSince(start)
start = Date()
var total = 0
for _ in 0..<200 {
    let rows: PostgresRowSequence = try await conn.query(PostgresQuery(unsafeSQL: "SELECT id, event_id, payload FROM nio_t ORDER BY id LIMIT 1000"), logger: logger)
    for try await (id, eid, p) in rows.decode((Int64, String, String).self) { total += Int(id) & 1 + eid.utf8.count + p.utf8.count }
}
let reads = 200_000.0 / Date().timeIntervalSince(start)
print("postgres-nio \(Int(inserts)) \(Int(reads)) \(rssKB() / 1024) \(total)")
try await conn.closeGracefully()

import CLibPQ
import Foundation

// The same workload as nio-bench: 20,000 single-row INSERTs (one round trip each), then 200
// reads of 1,000 rows with ~1.2 KB payloads; prints inserts/s, rows/s and peak RSS.
func rssKB() -> Int { var u = rusage(); getrusage(RUSAGE_SELF.rawValue, &u); return u.ru_maxrss }
let port = Int(CommandLine.arguments[1])!
let conn = PQconnectdb("host=127.0.0.1 port=\(port) user=postgres dbname=postgres")!
guard PQstatus(conn) == CONNECTION_OK else { fatalError(String(cString: PQerrorMessage(conn))) }
@MainActor func exec(_ sql: String) { PQclear(PQexec(conn, sql)) }
exec("DROP TABLE IF EXISTS pq_t")
exec("CREATE TABLE pq_t (id bigserial PRIMARY KEY, event_id text UNIQUE NOT NULL, payload text NOT NULL)")
PQclear(PQprepare(conn, "ins", "INSERT INTO pq_t (event_id, payload) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING", 2, nil))
PQclear(PQprepare(conn, "sel", "SELECT id, event_id, payload FROM pq_t ORDER BY id LIMIT 1000", 0, nil))
let payload = String(repeating: "x", count: 1200)
var start = Date()
let n = 20_000
for i in 0..<n {
    let id = "e\(i)"
    id.withCString { a in
        payload.withCString { b in
            var values: [UnsafePointer<CChar>?] = [a, b]
            let r = PQexecPrepared(conn, "ins", 2, &values, nil, nil, 0)
            guard PQresultStatus(r) == PGRES_COMMAND_OK else { fatalError(String(cString: PQerrorMessage(conn))) }
            PQclear(r)
        }
    }
}
let inserts = Double(n) / Date().timeIntervalSince(start)
start = Date()
var total = 0
for _ in 0..<200 {
    let r = PQexecPrepared(conn, "sel", 0, nil, nil, nil, 0)
    for row in 0..<PQntuples(r) {
        let id = strtoll(PQgetvalue(r, row, 0), nil, 10)
        let eid = String(cString: PQgetvalue(r, row, 1))
        let length = Int(PQgetlength(r, row, 2))
        let p = PQgetvalue(r, row, 2)!.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
        total += Int(id) & 1 + eid.utf8.count + p.count
    }
    PQclear(r)
}
let reads = 200_000.0 / Date().timeIntervalSince(start)
print("libpq \(Int(inserts)) \(Int(reads)) \(rssKB() / 1024) \(total)")
PQfinish(conn)

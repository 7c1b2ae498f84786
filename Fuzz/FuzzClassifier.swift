// libFuzzer target: the response classifier on arbitrary responses (status, headers, body),
// and redaction of what it returns (built and run by scripts/fuzz).
import ForwarderCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClassifier(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard bytes.count >= 2 else { return 0 }
    let status = Int(bytes[0]) * 4 % 1000  // 0…996: every class of status
    let split = Int(bytes[1]) % max(bytes.count - 1, 1)
    let rest = Array(bytes[2...])
    let headerText = String(decoding: rest.prefix(split), as: UTF8.self)
    var headers: [String: String] = [:]
    for line in headerText.split(separator: "\n") {
        if let colon = line.firstIndex(of: ":") { headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...]) }
    }
    let response = HTTPResponse(status: status, headers: headers, body: Array(rest.dropFirst(split)))
    let (outcome, _, _) = ResponseClassifier.classifyDetailed(.success(response))
    let redacted = outcome.redacting("secret-token-value")
    if "\(redacted)".contains("secret-token-value") { fatalError("the token survived redaction") }
    _ = ResponseClassifier.offendingIndex(in: headerText)
    return 0
}

// libFuzzer target: the sandbox's request validator (what a TikTok stand-in accepts) on
// arbitrary request bodies (built and run by scripts/fuzz).
import ForwarderCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzValidator(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let buffer = UnsafeRawBufferPointer(start: data, count: size)
    _ = TrackRequestValidator.countEvents(buffer)
    if let request = try? JSONParser.parse(Array(buffer)) {
        _ = TrackRequestValidator.firstProblem(in: request)
    }
    return 0
}

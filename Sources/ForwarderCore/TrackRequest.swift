/// The body of one `POST /open_api/v1.3/event/track/` request.
public enum TrackRequest {
    /// TikTok rejects a request with more than this many events.
    public static let maximumEvents = 1_000

    /// `{"event_source":"web","event_source_id":…,"test_event_code":…,"data":[…]}` around
    /// events already encoded by ``TikTokEvent/encode(into:)``.
    public static func body(pixelCode: String, testEventCode: String?, events: [[UInt8]]) -> [UInt8] {
        var w = JSONWriter(capacity: events.reduce(128) { $0 + $1.count + 1 })
        w.raw("{\"event_source\":\"web\",\"event_source_id\":")
        w.string(pixelCode)
        if let testEventCode, !testEventCode.isEmpty {
            w.raw(",\"test_event_code\":")
            w.string(testEventCode)
        }
        w.raw(",\"data\":[")
        for (i, event) in events.enumerated() {
            if i > 0 { w.raw(UInt8(ascii: ",")) }
            w.raw(event)
        }
        w.raw("]}")
        return w.bytes
    }
}

/// Sends request bodies to TikTok: the HTTP seam. One instance per worker thread; `post`
/// blocks that thread (never call it from Swift's cooperative pool).
public protocol EventTransport: AnyObject {
    func post(body: [UInt8], accessToken: String) -> Result<HTTPResponse, TransportFailure>
}

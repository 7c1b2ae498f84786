/// The body of one `POST /open_api/v1.3/event/track/` request.
public enum TrackRequest {
    /// TikTok rejects a request with more than this many events.
    public static let maximumEvents = 1_000

    /// `{"event_source":"web","event_source_id":…,"test_event_code":…,"data":[…]}` around
    /// events already encoded by ``TikTokEvent/encode(into:)``.
    public static func body<Event: Collection<UInt8>>(source: EventSource = .web, sourceID: String, testEventCode: String?, partnerName: String? = nil,
                                                      events: [Event]) -> [UInt8] {
        var w = JSONWriter(capacity: events.reduce(128) { $0 + $1.count + 1 })
        writeHead(source: source, sourceID: sourceID, testEventCode: testEventCode, partnerName: partnerName, into: &w)
        for (i, event) in events.enumerated() {
            if i > 0 { w.raw(UInt8(ascii: ",")) }
            w.raw(event)
        }
        writeTail(into: &w)
        return w.bytes
    }

    /// Everything before the first event: `{"event_source":"web",…,"data":[`.
    /// `partnerName`: TikTok's optional integration tag, sent only when configured.
    /// `sourceID`: the pixel code (web), the TikTok App ID (app) or the event set id.
    public static func writeHead(source: EventSource = .web, sourceID: String, testEventCode: String?, partnerName: String? = nil, into w: inout JSONWriter) {
        w.raw("{\"event_source\":")
        w.string(source.rawValue)
        w.raw(",\"event_source_id\":")
        w.string(sourceID)
        if let testEventCode, !testEventCode.isEmpty {
            w.raw(",\"test_event_code\":")
            w.string(testEventCode)
        }
        if let partnerName, !partnerName.isEmpty {
            w.raw(",\"partner_name\":")
            w.string(partnerName)
        }
        w.raw(",\"data\":[")
    }

    /// Everything after the last event: `]}`.
    public static func writeTail(into w: inout JSONWriter) {
        w.raw("]}")
    }
}

/// Sends request bodies to TikTok: the HTTP seam. One instance per worker thread; `post`
/// blocks that thread (never call it from Swift's cooperative pool).
public protocol EventTransport: AnyObject {
    /// `body` is valid for the duration of the call (the daemon passes its batch buffer in
    /// place: a ~1.4 MB copy per request was measurable).
    func post(body: UnsafeBufferPointer<UInt8>, accessToken: String) -> Result<HTTPResponse, TransportFailure>
}

extension EventTransport {
    public func post(body: [UInt8], accessToken: String) -> Result<HTTPResponse, TransportFailure> {
        body.withUnsafeBufferPointer { post(body: $0, accessToken: accessToken) }
    }
}

/// A parsed JSON value.
///
/// Numbers keep the literal text they were written with, so an id sent as a number
/// (`9179124954957`) becomes the string `"9179124954957"` with every digit intact, and a
/// value is converted to `Double` only where a number is wanted.
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSON])
    case object(JSONObject)

    /// The member `key` of an object, or `nil` for a missing key or a non-object.
    @inlinable
    public subscript(key: String) -> JSON? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// Follows a path of object keys; a segment made of digits indexes an array.
    public func value(at path: [String]) -> JSON? {
        var current = self
        for segment in path {
            switch current {
            case .object(let object):
                guard let next = object[segment] else { return nil }
                current = next
            case .array(let elements):
                guard let index = Int(segment), elements.indices.contains(index) else { return nil }
                current = elements[index]
            default:
                return nil
            }
        }
        return current
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}

/// A JSON object that keeps its members in document order. Objects in events are small,
/// so a linear scan beats hashing every key.
public struct JSONObject: Sendable, Equatable {
    public var keys: [String]
    public var values: [JSON]

    public init(keys: [String] = [], values: [JSON] = []) {
        self.keys = keys
        self.values = values
    }

    @inlinable
    public subscript(key: String) -> JSON? {
        for i in keys.indices where keys[i] == key { return values[i] }
        return nil
    }

    public mutating func append(_ key: String, _ value: JSON) {
        keys.append(key)
        values.append(value)
    }
}

/// Why a document is not JSON. Carries a byte offset, never the document's content.
public struct JSONParseError: Error, Equatable, CustomStringConvertible {
    public var reason: String
    public var offset: Int
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

/// A strict RFC 8259 parser over UTF-8 bytes, with a nesting limit so that hostile input
/// cannot exhaust the stack.
public struct JSONParser {
    public static let maximumDepth = 256

    public static func parse(_ text: String) throws(JSONParseError) -> JSON {
        try parse(Array(text.utf8))
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSON {
        try bytes.withUnsafeBufferPointer { buffer throws(JSONParseError) in try parse(buffer) }
    }

    public static func parse(_ buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSON {
        var parser = JSONParser(buffer: buffer)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.position == buffer.count else { throw parser.error("unexpected data after the value") }
        return value
    }

    /// Validates a whole document as strictly as ``parse(_:)-(UnsafeBufferPointer<UInt8>)``
    /// but builds only the members an event id can come from (`event_id`, `context`): what
    /// a producer-side check needs, without allocating the rest. Returns the object's event
    /// id by ``NDJSONLine/eventID(of:)``'s rule, or `isObject == false` for valid JSON that
    /// is not an object.
    public static func eventID(_ buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> (isObject: Bool, eventID: String?) {
        var parser = JSONParser(buffer: buffer)
        parser.skipWhitespace()
        guard parser.position < buffer.count, buffer[parser.position] == UInt8(ascii: "{") else {
            try parser.skipValue(depth: 0)
            parser.skipWhitespace()
            guard parser.position == buffer.count else { throw parser.error("unexpected data after the value") }
            return (false, nil)
        }
        var kept = JSONObject()
        parser.position += 1
        parser.skipWhitespace()
        if parser.position < buffer.count, buffer[parser.position] == UInt8(ascii: "}") {
            parser.position += 1
        } else {
            while true {
                parser.skipWhitespace()
                guard parser.position < buffer.count, buffer[parser.position] == UInt8(ascii: "\"") else { throw parser.error("expected a member name") }
                let key = try parser.parseString()
                parser.skipWhitespace()
                guard parser.position < buffer.count, buffer[parser.position] == UInt8(ascii: ":") else { throw parser.error("expected ':'") }
                parser.position += 1
                parser.skipWhitespace()
                if (key == "event_id" || key == "context") && kept[key] == nil {
                    kept.append(key, try parser.parseValue(depth: 1))
                } else {
                    try parser.skipValue(depth: 1)
                }
                parser.skipWhitespace()
                guard parser.position < buffer.count else { throw parser.error("unexpected end of input") }
                if buffer[parser.position] == UInt8(ascii: ",") { parser.position += 1; continue }
                if buffer[parser.position] == UInt8(ascii: "}") { parser.position += 1; break }
                throw parser.error("expected ',' or '}'")
            }
        }
        parser.skipWhitespace()
        guard parser.position == buffer.count else { throw parser.error("unexpected data after the value") }
        return (true, NDJSONLine.eventID(of: .object(kept)))
    }

    private let buffer: UnsafeBufferPointer<UInt8>
    private var position = 0

    private init(buffer: UnsafeBufferPointer<UInt8>) {
        self.buffer = buffer
    }

    private func error(_ reason: String) -> JSONParseError {
        JSONParseError(reason: reason, offset: position)
    }

    private mutating func skipWhitespace() {
        while position < buffer.count {
            switch buffer[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSON {
        guard position < buffer.count else { throw error("unexpected end of input") }
        switch buffer[position] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw error("unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard position + count <= buffer.count else { throw error("unexpected end of input") }
        let expected = UnsafeBufferPointer(start: literal.utf8Start, count: count)
        for i in 0..<count where buffer[position + i] != expected[i] {
            throw error("invalid literal")
        }
        position += count
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSON {
        guard depth <= Self.maximumDepth else { throw error("nested too deeply") }
        position += 1
        var object = JSONObject()
        // Event objects have a handful of members: one allocation instead of 1, 2, 4, 8 growth.
        object.keys.reserveCapacity(8)
        object.values.reserveCapacity(8)
        skipWhitespace()
        if position < buffer.count, buffer[position] == UInt8(ascii: "}") {
            position += 1
            return .object(object)
        }
        while true {
            skipWhitespace()
            guard position < buffer.count, buffer[position] == UInt8(ascii: "\"") else { throw error("expected a member name") }
            let key = try parseString()
            skipWhitespace()
            guard position < buffer.count, buffer[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
            position += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            object.append(key, value)
            skipWhitespace()
            guard position < buffer.count else { throw error("unexpected end of input") }
            if buffer[position] == UInt8(ascii: ",") { position += 1; continue }
            if buffer[position] == UInt8(ascii: "}") { position += 1; return .object(object) }
            throw error("expected ',' or '}'")
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSON {
        guard depth <= Self.maximumDepth else { throw error("nested too deeply") }
        position += 1
        var elements: [JSON] = []
        elements.reserveCapacity(4)
        skipWhitespace()
        if position < buffer.count, buffer[position] == UInt8(ascii: "]") {
            position += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            guard position < buffer.count else { throw error("unexpected end of input") }
            if buffer[position] == UInt8(ascii: ",") { position += 1; continue }
            if buffer[position] == UInt8(ascii: "]") { position += 1; return .array(elements) }
            throw error("expected ',' or ']'")
        }
    }

    /// ``parseValue(depth:)``'s grammar without building anything.
    private mutating func skipValue(depth: Int) throws(JSONParseError) {
        guard position < buffer.count else { throw error("unexpected end of input") }
        switch buffer[position] {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let isObject = buffer[position] == UInt8(ascii: "{")
            let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            guard depth + 1 <= Self.maximumDepth else { throw error("nested too deeply") }
            position += 1
            skipWhitespace()
            if position < buffer.count, buffer[position] == close { position += 1; return }
            while true {
                skipWhitespace()
                if isObject {
                    guard position < buffer.count, buffer[position] == UInt8(ascii: "\"") else { throw error("expected a member name") }
                    try skipString()
                    skipWhitespace()
                    guard position < buffer.count, buffer[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
                    position += 1
                    skipWhitespace()
                }
                try skipValue(depth: depth + 1)
                skipWhitespace()
                guard position < buffer.count else { throw error("unexpected end of input") }
                if buffer[position] == UInt8(ascii: ",") { position += 1; continue }
                if buffer[position] == close { position += 1; return }
                throw error(isObject ? "expected ',' or '}'" : "expected ',' or ']'")
            }
        case UInt8(ascii: "\""): try skipString()
        case UInt8(ascii: "t"): try expectLiteral("true")
        case UInt8(ascii: "f"): try expectLiteral("false")
        case UInt8(ascii: "n"): try expectLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try scanNumber()
        default: throw error("unexpected character")
        }
    }

    /// ``parseString()``'s grammar without building the string.
    private mutating func skipString() throws(JSONParseError) {
        position += 1
        while position < buffer.count {
            let byte = buffer[position]
            if byte == UInt8(ascii: "\"") { position += 1; return }
            if byte < 0x20 { throw error("control character in string") }
            position += 1
            guard byte == UInt8(ascii: "\\") else { continue }
            guard position < buffer.count else { break }
            let escape = buffer[position]
            position += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                 UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                continue
            case UInt8(ascii: "u"):
                _ = try parseUnicodeEscape()
            default:
                throw error("invalid escape")
            }
        }
        throw error("unterminated string")
    }

    private mutating func parseNumber() throws(JSONParseError) -> String {
        let start = position
        try scanNumber()
        return String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<position]), as: UTF8.self)
    }

    /// Moves past a number, checking RFC 8259's grammar.
    private mutating func scanNumber() throws(JSONParseError) {
        if buffer[position] == UInt8(ascii: "-") { position += 1 }
        guard position < buffer.count, isDigit(buffer[position]) else { throw error("invalid number") }
        if buffer[position] == UInt8(ascii: "0") {
            position += 1
        } else {
            while position < buffer.count, isDigit(buffer[position]) { position += 1 }
        }
        if position < buffer.count, buffer[position] == UInt8(ascii: ".") {
            position += 1
            guard position < buffer.count, isDigit(buffer[position]) else { throw error("invalid number") }
            while position < buffer.count, isDigit(buffer[position]) { position += 1 }
        }
        if position < buffer.count, buffer[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            if position < buffer.count, buffer[position] == UInt8(ascii: "+") || buffer[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard position < buffer.count, isDigit(buffer[position]) else { throw error("invalid number") }
            while position < buffer.count, isDigit(buffer[position]) { position += 1 }
        }
    }

    @inline(__always)
    private func isDigit(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "0") < 10 }

    private mutating func parseString() throws(JSONParseError) -> String {
        position += 1  // opening quote
        let start = position
        // Fast path: no escapes, which is nearly every string in an event.
        while position < buffer.count {
            let byte = buffer[position]
            if byte == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<position]), as: UTF8.self)
                position += 1
                return s
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("control character in string") }
            position += 1
        }
        var bytes = Array(buffer[start..<position])
        while position < buffer.count {
            let byte = buffer[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                return String(decoding: bytes, as: UTF8.self)
            }
            if byte < 0x20 { throw error("control character in string") }
            if byte != UInt8(ascii: "\\") {
                bytes.append(byte)
                position += 1
                continue
            }
            position += 1
            guard position < buffer.count else { break }
            let escape = buffer[position]
            position += 1
            switch escape {
            case UInt8(ascii: "\""): bytes.append(0x22)
            case UInt8(ascii: "\\"): bytes.append(0x5C)
            case UInt8(ascii: "/"): bytes.append(0x2F)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                bytes.append(contentsOf: String(Character(try parseUnicodeEscape())).utf8)
            default:
                throw error("invalid escape")
            }
        }
        throw error("unterminated string")
    }

    /// The scalar of a `\uXXXX` escape (after the `u`), joining a surrogate pair; a lone or
    /// mismatched surrogate is an error. Shared by ``parseString()`` and ``skipString()``.
    private mutating func parseUnicodeEscape() throws(JSONParseError) -> Unicode.Scalar {
        var scalar = try parseHex4()
        if (0xD800...0xDBFF).contains(scalar) {
            // A high surrogate must be followed by an escaped low surrogate.
            guard position + 1 < buffer.count, buffer[position] == UInt8(ascii: "\\"),
                  buffer[position + 1] == UInt8(ascii: "u") else { throw error("unpaired surrogate") }
            position += 2
            let low = try parseHex4()
            guard (0xDC00...0xDFFF).contains(low) else { throw error("unpaired surrogate") }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00...0xDFFF).contains(scalar) {
            throw error("unpaired surrogate")
        }
        return Unicode.Scalar(scalar)!
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard position + 4 <= buffer.count else { throw error("invalid \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = buffer[position]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }
}

/// Appends compact JSON to a byte buffer. The caller writes structure (`{`, `,`, keys);
/// this type gets escaping and number formatting right.
public struct JSONWriter {
    public var bytes: [UInt8]

    public init(capacity: Int = 1024) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inline(__always)
    public mutating func raw(_ byte: UInt8) { bytes.append(byte) }

    public mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    public mutating func raw<C: Collection<UInt8>>(_ data: C) { bytes.append(contentsOf: data) }

    /// Writes `"key":`.
    public mutating func key(_ key: StaticString) {
        bytes.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    public mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        var copy = value
        copy.withUTF8 { utf8 in
            var runStart = 0
            for i in 0..<utf8.count {
                let byte = utf8[i]
                guard byte < 0x20 || byte == 0x22 || byte == 0x5C else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i]))
                switch byte {
                case 0x22: bytes.append(0x5C); bytes.append(0x22)
                case 0x5C: bytes.append(0x5C); bytes.append(0x5C)
                case 0x0A: bytes.append(0x5C); bytes.append(UInt8(ascii: "n"))
                case 0x0D: bytes.append(0x5C); bytes.append(UInt8(ascii: "r"))
                case 0x09: bytes.append(0x5C); bytes.append(UInt8(ascii: "t"))
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    bytes.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                              hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
                }
                runStart = i + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<utf8.count]))
        }
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func integer(_ value: Int64) {
        // Digits written straight into the buffer (a String per number was ~1 % of a transform).
        guard value != .min else { bytes.append(contentsOf: "-9223372036854775808".utf8); return }
        var magnitude = value < 0 ? UInt64(-value) : UInt64(value)
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes of scratch, on the stack
        withUnsafeMutableBytes(of: &digits) { scratch in
            var end = scratch.count
            repeat {
                end -= 1
                scratch[end] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[end...]))
        }
    }

    /// Integral values print without a fraction (`16`, not `16.0`); others in the shortest
    /// form that reads back exactly. Non-finite values cannot be JSON: callers never pass them.
    public mutating func number(_ value: Double) {
        if value.rounded() == value, abs(value) < 1e15 {
            integer(Int64(value))
        } else {
            bytes.append(contentsOf: value.description.utf8)
        }
    }

    public mutating func bool(_ value: Bool) {
        raw(value ? "true" : "false")
    }

    /// Writes any parsed value back out.
    public mutating func value(_ value: JSON) {
        switch value {
        case .null: raw("null")
        case .bool(let b): bool(b)
        case .number(let literal): bytes.append(contentsOf: literal.utf8)
        case .string(let s): string(s)
        case .array(let elements):
            raw(UInt8(ascii: "["))
            for (i, element) in elements.enumerated() {
                if i > 0 { raw(UInt8(ascii: ",")) }
                self.value(element)
            }
            raw(UInt8(ascii: "]"))
        case .object(let object):
            raw(UInt8(ascii: "{"))
            for i in object.keys.indices {
                if i > 0 { raw(UInt8(ascii: ",")) }
                string(object.keys[i])
                raw(UInt8(ascii: ":"))
                self.value(object.values[i])
            }
            raw(UInt8(ascii: "}"))
        }
    }

    /// Encodes a single value to a string (for CLI output and tests).
    public static func encode(_ value: JSON) -> String {
        var writer = JSONWriter(capacity: 256)
        writer.value(value)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

extension JSONParser {
    /// Parses as strictly as ``parse(_:)-(UnsafeBufferPointer<UInt8>)`` (same grammar, same
    /// errors) but builds no value: `nodes` gets one node per value, in document order, with
    /// byte offsets into `buffer` (the transform reads only the members it maps, and makes a
    /// String only for those). `nodes` is cleared first and keeps its capacity, so one array
    /// serves every event of a worker.
    static func tape(_ buffer: UnsafeBufferPointer<UInt8>, into nodes: inout [JSONTape.Node]) throws(JSONParseError) {
        nodes.removeAll(keepingCapacity: true)
        // Offsets are 32-bit (SQLite's own limit on a value is 1e9 bytes by default).
        guard buffer.count < Int(Int32.max) else { throw JSONParseError(reason: "document larger than 2 GiB", offset: 0) }
        var parser = JSONParser(buffer: buffer)
        parser.skipWhitespace()
        try parser.tapeValue(depth: 0, into: &nodes)
        parser.skipWhitespace()
        guard parser.position == buffer.count else { throw parser.error("unexpected data after the value") }
    }

    private mutating func tapeValue(depth: Int, into nodes: inout [JSONTape.Node]) throws(JSONParseError) {
        guard position < buffer.count else { throw error("unexpected end of input") }
        let start = Int32(truncatingIfNeeded: position)
        switch buffer[position] {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let isObject = buffer[position] == UInt8(ascii: "{")
            let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            guard depth + 1 <= Self.maximumDepth else { throw error("nested too deeply") }
            let index = nodes.count
            nodes.append(JSONTape.Node(kind: isObject ? .object : .array, start: start, end: 0, next: 0))
            position += 1
            skipWhitespace()
            if position < buffer.count, buffer[position] == close {
                position += 1
            } else {
                while true {
                    skipWhitespace()
                    if isObject {
                        guard position < buffer.count, buffer[position] == UInt8(ascii: "\"") else { throw error("expected a member name") }
                        try tapeString(into: &nodes)
                        skipWhitespace()
                        guard position < buffer.count, buffer[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
                        position += 1
                        skipWhitespace()
                    }
                    try tapeValue(depth: depth + 1, into: &nodes)
                    skipWhitespace()
                    guard position < buffer.count else { throw error("unexpected end of input") }
                    if buffer[position] == UInt8(ascii: ",") { position += 1; continue }
                    if buffer[position] == close { position += 1; break }
                    throw error(isObject ? "expected ',' or '}'" : "expected ',' or ']'")
                }
            }
            nodes[index].end = Int32(truncatingIfNeeded: position)
            nodes[index].next = Int32(truncatingIfNeeded: nodes.count)
        case UInt8(ascii: "\""):
            try tapeString(into: &nodes)
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            nodes.append(JSONTape.Node(kind: .true, start: start, end: Int32(truncatingIfNeeded: position), next: Int32(truncatingIfNeeded: nodes.count + 1)))
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            nodes.append(JSONTape.Node(kind: .false, start: start, end: Int32(truncatingIfNeeded: position), next: Int32(truncatingIfNeeded: nodes.count + 1)))
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            nodes.append(JSONTape.Node(kind: .null, start: start, end: Int32(truncatingIfNeeded: position), next: Int32(truncatingIfNeeded: nodes.count + 1)))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try scanNumber()
            nodes.append(JSONTape.Node(kind: .number, start: start, end: Int32(truncatingIfNeeded: position), next: Int32(truncatingIfNeeded: nodes.count + 1)))
        default:
            throw error("unexpected character")
        }
    }

    /// A string node: its content between the quotes; `.escapedString` when it holds escapes.
    private mutating func tapeString(into nodes: inout [JSONTape.Node]) throws(JSONParseError) {
        let open = position
        var escaped = false
        // Fast path: no escape before the closing quote (nearly every string in an event).
        var scan = position + 1
        while scan < buffer.count {
            let byte = buffer[scan]
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { escaped = true; break }
            scan += 1
        }
        if !escaped, scan < buffer.count {
            position = scan + 1
        } else {
            try skipString()  // the full grammar: escapes, and the errors
        }
        nodes.append(JSONTape.Node(kind: escaped ? .escapedString : .string, start: Int32(truncatingIfNeeded: open + 1),
                                   end: Int32(truncatingIfNeeded: position - 1), next: Int32(truncatingIfNeeded: nodes.count + 1)))
    }

    /// The value of one string node with escapes, decoded by the full parser.
    static func decodeEscaped(_ buffer: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> String {
        guard case .string(let text)? = try? parse(UnsafeBufferPointer(rebasing: buffer[(start - 1)...end])) else { return "" }
        return text
    }
}

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

/// Byte scanning shared by the parser and the writer.
enum JSONBytes {
    /// The first offset at or after `start` that may hold a byte a JSON string cannot carry
    /// as it is (`"`, `\\`, a control character), or `buffer.count`, looking eight bytes at a
    /// time: where every byte is plain, the string's bytes go through unchanged. Inside the
    /// buffer the answer is exact; in its last word (read overlapping, from `count - 8`) a byte
    /// just after a special one before `start` can be flagged too, so callers confirm the byte
    /// they are pointed at (their byte-by-byte loop decides).
    @inline(__always)
    static func plainRunEnd(_ buffer: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        guard let base = buffer.baseAddress else { return start }
        var i = start
        while i &+ 8 <= buffer.count {
            let special = specialBytes(at: base + i)
            // Little-endian word: the lowest flagged byte is the first special one (the
            // zero-byte tests can only flag bytes above a true match, never below it).
            if special != 0 { return i &+ special.trailingZeroBitCount &>> 3 }
            i &+= 8
        }
        guard i < buffer.count, buffer.count >= 8 else { return i }
        let tail = buffer.count &- 8
        let special = specialBytes(at: base + tail) &>> (UInt64(i &- tail) &* 8)
        return special == 0 ? buffer.count : i &+ special.trailingZeroBitCount &>> 3
    }

    /// The offset of the `"` that closes a string whose content starts at `start`, when no
    /// `\\` or control byte comes before it; nil otherwise (an escape, an error, no end).
    /// Eight bytes at a time, telling the quote from the other special bytes by their own
    /// masks (each mask's lowest flagged byte is exact: a false flag only ever sits above a
    /// true match of the same test), so the byte found is not read again.
    @inline(__always)
    static func closingQuote(_ buffer: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        guard let base = buffer.baseAddress else { return nil }
        var i = start
        while i &+ 8 <= buffer.count {
            let word = self.word(at: base + i)
            let quotes = flags(word, equalTo: 0x22)
            let others = flags(word, equalTo: 0x5C) | flagsBelow0x20(word)
            if quotes | others != 0 {
                guard quotes != 0, others == 0 || quotes.trailingZeroBitCount < others.trailingZeroBitCount else { return nil }
                return i &+ quotes.trailingZeroBitCount &>> 3
            }
            i &+= 8
        }
        while i < buffer.count {
            let byte = buffer[i]
            if byte == 0x22 { return i }
            if byte == 0x5C || byte < 0x20 { return nil }
            i &+= 1
        }
        return nil
    }

    /// The high bit of each byte of the 8 at `pointer` that is `"`, `\\` or below 0x20, in
    /// little-endian order (bytes ≥ 0x80 never match).
    @inline(__always)
    private static func specialBytes(at pointer: UnsafePointer<UInt8>) -> UInt64 {
        let word = self.word(at: pointer)
        return flags(word, equalTo: 0x22) | flags(word, equalTo: 0x5C) | flagsBelow0x20(word)
    }

    /// The 8 bytes at `pointer`, the first in the lowest bits.
    @inline(__always)
    static func word(at pointer: UnsafePointer<UInt8>) -> UInt64 {
        UInt64(littleEndian: UnsafeRawPointer(pointer).loadUnaligned(as: UInt64.self))
    }

    /// The high bit of each byte of `word` that is `byte`. The lowest flag is exact; a byte
    /// just above a true match may be flagged too (the borrow), never one below it, so the
    /// lowest flag of any union of these masks is the first byte that matches any of them.
    @inline(__always)
    static func flags(_ word: UInt64, equalTo byte: UInt8) -> UInt64 {
        let x = word ^ (0x0101_0101_0101_0101 &* UInt64(byte))
        return (x &- 0x0101_0101_0101_0101) & ~x & 0x8080_8080_8080_8080
    }

    /// The high bit of each byte of `word` below 0x20 (bytes ≥ 0x80 never), with the same
    /// exactness as ``flags(_:equalTo:)``.
    @inline(__always)
    static func flagsBelow0x20(_ word: UInt64) -> UInt64 {
        (word &- 0x2020_2020_2020_2020) & ~word & 0x8080_8080_8080_8080
    }
}

/// Appends compact JSON to a byte buffer. The caller writes structure (`{`, `,`, keys);
/// this type gets escaping and number formatting right.
///
/// The buffer is written through a pointer held in the writer itself (`Array.append` cost
/// most of the time spent encoding an event, and a class-held buffer a retain per call). It
/// is still a value: a copy shares the buffer until one of them writes, which then writes
/// into a buffer of its own (the uniqueness check is one compare per write, not per byte).
public struct JSONWriter {
    /// Owns the allocation: frees it when the last writer goes.
    private final class Allocation {
        var base: UnsafeMutablePointer<UInt8>
        init(_ base: UnsafeMutablePointer<UInt8>) { self.base = base }
        deinit { base.deallocate() }
    }

    private var allocation: Allocation
    private var base: UnsafeMutablePointer<UInt8>
    /// How many bytes have been written.
    public private(set) var count = 0
    private var capacity: Int

    public init(capacity: Int = 1024) {
        self.capacity = max(capacity, 16)
        base = .allocate(capacity: self.capacity)
        allocation = Allocation(base)
    }

    /// Room for `extra` more bytes.
    @inline(__always)
    private mutating func reserve(_ extra: Int) {
        if capacity &- count < extra || !isKnownUniquelyReferenced(&allocation) { grow(extra) }
    }

    /// Room for `extra` more bytes in a buffer of this writer's own.
    @inline(never)
    private mutating func grow(_ extra: Int) {
        resize(to: capacity &- count >= extra ? capacity : max(capacity.multipliedReportingOverflow(by: 2).partialValue, count + extra))
    }

    private mutating func resize(to wanted: Int) {
        let larger = UnsafeMutablePointer<UInt8>.allocate(capacity: wanted)
        larger.initialize(from: base, count: count)
        if isKnownUniquelyReferenced(&allocation) {
            allocation.base.deallocate()
            allocation.base = larger
        } else {
            allocation = Allocation(larger)  // a copy keeps the old buffer
        }
        base = larger
        capacity = wanted
    }

    @inline(__always)
    private mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count)
        (base + count).update(from: source, count: bytes.count)
        count &+= bytes.count
    }

    /// A copy of what has been written.
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    /// What has been written, without a copy; valid only inside `body`.
    public func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try withExtendedLifetime(allocation) { try body(UnsafeBufferPointer(start: base, count: count)) }
    }

    /// Room for `capacity` bytes in all, without growing on the way.
    public mutating func reserveCapacity(_ capacity: Int) {
        if capacity > self.capacity || !isKnownUniquelyReferenced(&allocation) { resize(to: max(capacity, self.capacity)) }
    }

    /// Forgets everything after the first `count` bytes (an event that did not fit).
    public mutating func truncate(to count: Int) {
        self.count = min(max(0, count), self.count)
    }

    @inline(__always)
    public mutating func raw(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count &+= 1
    }

    public mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { append($0) }
    }

    public mutating func raw<C: Collection<UInt8>>(_ data: C) {
        if data.withContiguousStorageIfAvailable({ append($0) }) == nil {
            reserve(data.count)
            for byte in data { base[count] = byte; count &+= 1 }
        }
    }

    /// Writes `"key":`.
    public mutating func key(_ key: StaticString) {
        member(key, after: "")
    }

    /// Writes `prefix"key":` (`prefix`: a `,`, or an object's opening) with one reservation:
    /// an event writes some forty member names.
    public mutating func member(_ key: StaticString, after prefix: StaticString) {
        if key.hasPointerRepresentation, prefix.hasPointerRepresentation {
            member(UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount),
                   after: UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
            return
        }
        // withUTF8Buffer, not utf8Start: a one-character literal may be held as a scalar.
        prefix.withUTF8Buffer { prefix in
            key.withUTF8Buffer { key in member(key, after: prefix) }
        }
    }

    /// Writes `,"key":` (the members after an object's first).
    public mutating func nextMember(_ key: StaticString) {
        guard key.hasPointerRepresentation else { member(key, after: ","); return }
        member(UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount), after: UInt8(ascii: ","))
    }

    @inline(__always)
    private mutating func member(_ key: UnsafeBufferPointer<UInt8>, after prefix: UnsafeBufferPointer<UInt8>) {
        reserve(prefix.count &+ key.count &+ 3)
        copyReserved(prefix, 0, prefix.count)
        base[count] = UInt8(ascii: "\"")
        count &+= 1
        copyReserved(key, 0, key.count)
        base[count] = UInt8(ascii: "\"")
        base[count &+ 1] = UInt8(ascii: ":")
        count &+= 2
    }

    @inline(__always)
    private mutating func member(_ key: UnsafeBufferPointer<UInt8>, after prefix: UInt8) {
        reserve(key.count &+ 4)
        base[count] = prefix
        base[count &+ 1] = UInt8(ascii: "\"")
        count &+= 2
        copyReserved(key, 0, key.count)
        base[count] = UInt8(ascii: "\"")
        base[count &+ 1] = UInt8(ascii: ":")
        count &+= 2
    }

    public mutating func string(_ value: String) {
        // The view's contiguous bytes: no copy of the String (a retain and release per call).
        if value.utf8.withContiguousStorageIfAvailable({ string(utf8: $0) }) == nil {
            var copy = value
            copy.withUTF8 { string(utf8: $0) }
        }
    }

    /// A string from its UTF-8 bytes (valid UTF-8), escaped as JSON needs.
    ///
    /// One reservation covers the quotes and every byte unescaped; each escape reserves
    /// again for itself and the rest (so runs are copied without a check each).
    public mutating func string(utf8: UnsafeBufferPointer<UInt8>) {
        reserve(utf8.count &+ 2)
        base[count] = UInt8(ascii: "\"")
        count &+= 1
        var runStart = 0
        var i = JSONBytes.plainRunEnd(utf8, from: 0)
        while i < utf8.count {
            let byte = utf8[i]
            if byte >= 0x20, byte != 0x22, byte != 0x5C { i &+= 1; continue }
            copyReserved(utf8, runStart, i)
            reserve(6 &+ (utf8.count &- i))  // this escape, the rest of the string and the closing quote
            let out = base + count
            out[0] = 0x5C
            switch byte {
            case 0x22: out[1] = 0x22; count &+= 2
            case 0x5C: out[1] = 0x5C; count &+= 2
            case 0x0A: out[1] = UInt8(ascii: "n"); count &+= 2
            case 0x0D: out[1] = UInt8(ascii: "r"); count &+= 2
            case 0x09: out[1] = UInt8(ascii: "t"); count &+= 2
            default:
                let hex: StaticString = "0123456789abcdef"
                out[1] = UInt8(ascii: "u"); out[2] = UInt8(ascii: "0"); out[3] = UInt8(ascii: "0")
                out[4] = hex.utf8Start[Int(byte >> 4)]; out[5] = hex.utf8Start[Int(byte & 0xF)]
                count &+= 6
            }
            i &+= 1
            runStart = i
            i = JSONBytes.plainRunEnd(utf8, from: i)
        }
        copyReserved(utf8, runStart, utf8.count)
        base[count] = UInt8(ascii: "\"")
        count &+= 1
    }

    /// Copies `bytes[from ..< to]` into room already reserved. Up to 16 bytes (most keys and
    /// values) with two overlapping loads and stores instead of a call to `memmove`.
    @inline(__always)
    private mutating func copyReserved(_ bytes: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) {
        guard to > from, let source = bytes.baseAddress else { return }
        let n = to &- from
        let src = UnsafeRawPointer(source + from), dst = UnsafeMutableRawPointer(base + count)
        switch n {
        case 8...16:
            let head = src.loadUnaligned(as: UInt64.self), tail = src.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self)
            dst.storeBytes(of: head, as: UInt64.self)
            dst.storeBytes(of: tail, toByteOffset: n &- 8, as: UInt64.self)
        case 4...7:
            let head = src.loadUnaligned(as: UInt32.self), tail = src.loadUnaligned(fromByteOffset: n &- 4, as: UInt32.self)
            dst.storeBytes(of: head, as: UInt32.self)
            dst.storeBytes(of: tail, toByteOffset: n &- 4, as: UInt32.self)
        case 1...3:
            dst.storeBytes(of: src.load(as: UInt8.self), as: UInt8.self)
            dst.storeBytes(of: src.load(fromByteOffset: n / 2, as: UInt8.self), toByteOffset: n / 2, as: UInt8.self)
            dst.storeBytes(of: src.load(fromByteOffset: n &- 1, as: UInt8.self), toByteOffset: n &- 1, as: UInt8.self)
        default:
            (base + count).update(from: source + from, count: n)
        }
        count &+= n
    }

    public mutating func integer(_ value: Int64) {
        // Digits written straight into the buffer (a String per number was ~1 % of a transform).
        reserve(21)
        guard value != .min else { raw("-9223372036854775808"); return }
        var magnitude = value < 0 ? UInt64(-value) : UInt64(value)
        if value < 0 { base[count] = UInt8(ascii: "-"); count &+= 1 }
        var digits = 1
        var rest = magnitude / 10
        while rest > 0 { digits &+= 1; rest /= 10 }
        var at = count &+ digits
        repeat {
            at &-= 1
            base[at] = UInt8(ascii: "0") &+ UInt8(magnitude % 10)
            magnitude /= 10
        } while magnitude > 0
        count &+= digits
    }

    /// Integral values print without a fraction (`16`, not `16.0`); others in the shortest
    /// form that reads back exactly. Non-finite values cannot be JSON: callers never pass them.
    public mutating func number(_ value: Double) {
        // Integral below 10^15: the truncating conversion gives the value back (no call to
        // libm's round, which `rounded()` makes).
        if abs(value) < 1e15, Double(Int64(value)) == value {
            integer(Int64(value))
        } else if !decimal(value) {
            var text = value.description
            text.withUTF8 { append($0) }
        }
    }

    /// Powers of ten a Double and a UInt64 hold exactly, 10^0 ... 10^15.
    private static let powersOfTen: [UInt64] = (0...15).map { (0..<$0).reduce(1) { power, _ in power * 10 } }

    /// Writes a value of at most 15 significant digits between 0.001 and 10^15 (prices,
    /// order values) as `description` would, without making that String: the fewest
    /// fraction digits `k` for which `m / 10^k` (one correctly rounded division) is the value
    /// itself. With 15 digits or fewer that decimal is the only one that reads back as the
    /// value, so it is the shortest, which is what `description` prints. False (nothing
    /// written) for anything else.
    private mutating func decimal(_ value: Double) -> Bool {
        let magnitude = abs(value)
        guard magnitude >= 0.001, magnitude < 1e15 else { return false }
        for k in 1...15 {
            let power = Self.powersOfTen[k]
            let scale = Double(power)
            let product = magnitude * scale
            guard product < 1e15 else { return false }
            // The nearest integer (half up; a wrong neighbour fails the check below).
            let units = UInt64(product + 0.5)
            guard Double(units) / scale == magnitude else { continue }
            reserve(40)
            if value < 0 { base[count] = UInt8(ascii: "-"); count &+= 1 }
            integer(Int64(units / power))
            base[count] = UInt8(ascii: ".")
            count &+= 1
            var fraction = units % power
            var at = count &+ k
            for _ in 0..<k {
                at &-= 1
                base[at] = UInt8(ascii: "0") &+ UInt8(fraction % 10)
                fraction /= 10
            }
            count &+= k
            return true
        }
        return false
    }

    public mutating func bool(_ value: Bool) {
        raw(value ? "true" : "false")
    }

    /// Writes any parsed value back out.
    public mutating func value(_ value: JSON) {
        switch value {
        case .null: raw("null")
        case .bool(let b): bool(b)
        case .number(var literal): literal.withUTF8 { append($0) }
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
    /// String only for those). `nodes` is emptied first and keeps its room, so one storage
    /// serves every event of a worker. Returns the document's nodes, valid until `nodes` is
    /// used again.
    static func tape(_ buffer: UnsafeBufferPointer<UInt8>, into nodes: JSONTape.Nodes) throws(JSONParseError) -> UnsafeBufferPointer<JSONTape.Node> {
        // Offsets are 32-bit (SQLite's own limit on a value is 1e9 bytes by default).
        guard buffer.count < Int(Int32.max) else { throw JSONParseError(reason: "document larger than 2 GiB", offset: 0) }
        var parser = JSONParser(buffer: buffer)
        var out = JSONTape.Nodes.Writer(nodes)
        defer { out.done(nodes) }
        parser.skipWhitespace()
        try parser.tapeValue(depth: 0, into: &out)
        parser.skipWhitespace()
        guard parser.position == buffer.count else { throw parser.error("unexpected data after the value") }
        return UnsafeBufferPointer(start: out.base, count: out.count)
    }

    /// ``skipWhitespace()`` with one compare when there is none (compact JSON).
    @inline(__always)
    private mutating func skipTapeWhitespace() {
        if position < buffer.count, buffer[position] > 0x20 { return }
        skipWhitespace()
    }

    private mutating func tapeValue(depth: Int, into nodes: inout JSONTape.Nodes.Writer) throws(JSONParseError) {
        guard position < buffer.count else { throw error("unexpected end of input") }
        let start = Int32(truncatingIfNeeded: position)
        let first = buffer[position]
        switch first {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let isObject = first == UInt8(ascii: "{")
            let close = first &+ 2  // '}' and ']' are two after '{' and '['
            guard depth + 1 <= Self.maximumDepth else { throw error("nested too deeply") }
            let index = nodes.count
            nodes.append(JSONTape.Node(kind: isObject ? .object : .array, start: start, end: 0, next: 0))
            position += 1
            skipTapeWhitespace()
            if position < buffer.count, buffer[position] == close {
                position += 1
            } else {
                while true {
                    skipTapeWhitespace()
                    if isObject {
                        guard position < buffer.count, buffer[position] == UInt8(ascii: "\"") else { throw error("expected a member name") }
                        try tapeString(into: &nodes)
                        skipTapeWhitespace()
                        guard position < buffer.count, buffer[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
                        position += 1
                        skipTapeWhitespace()
                        // Most members are strings: taken here, without a call for the value.
                        if position < buffer.count, buffer[position] == UInt8(ascii: "\"") {
                            try tapeString(into: &nodes)
                        } else {
                            try tapeValue(depth: depth + 1, into: &nodes)
                        }
                    } else {
                        try tapeValue(depth: depth + 1, into: &nodes)
                    }
                    skipTapeWhitespace()
                    guard position < buffer.count else { throw error("unexpected end of input") }
                    if buffer[position] == UInt8(ascii: ",") { position += 1; continue }
                    if buffer[position] == close { position += 1; break }
                    throw error(isObject ? "expected ',' or '}'" : "expected ',' or ']'")
                }
            }
            nodes.finish(index, end: Int32(truncatingIfNeeded: position))
        case UInt8(ascii: "\""):
            try tapeString(into: &nodes)
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            nodes.append(JSONTape.Node(kind: .true, start: start, end: Int32(truncatingIfNeeded: position), next: Int32(truncatingIfNeeded: nodes.count &+ 1)))
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            nodes.append(JSONTape.Node(kind: .false, start: start, end: Int32(truncatingIfNeeded: position), next: Int32(truncatingIfNeeded: nodes.count &+ 1)))
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            nodes.append(JSONTape.Node(kind: .null, start: start, end: Int32(truncatingIfNeeded: position), next: Int32(truncatingIfNeeded: nodes.count &+ 1)))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try scanNumber()
            nodes.append(JSONTape.Node(kind: .number, start: start, end: Int32(truncatingIfNeeded: position), next: Int32(truncatingIfNeeded: nodes.count &+ 1)))
        default:
            throw error("unexpected character")
        }
    }

    /// A string node: its content between the quotes; `.escapedString` when it holds escapes.
    @inline(__always)
    private mutating func tapeString(into nodes: inout JSONTape.Nodes.Writer) throws(JSONParseError) {
        let open = position
        var escaped = false
        // Fast path: no escape before the closing quote (nearly every string in an event).
        if let close = JSONBytes.closingQuote(buffer, from: position + 1) {
            position = close + 1
        } else {
            escaped = true
            try skipString()  // the full grammar: escapes, and the errors
        }
        nodes.append(JSONTape.Node(kind: escaped ? .escapedString : .string, start: Int32(truncatingIfNeeded: open + 1),
                                   end: Int32(truncatingIfNeeded: position - 1), next: Int32(truncatingIfNeeded: nodes.count &+ 1)))
    }

    /// The value of one string node with escapes, decoded by the full parser.
    static func decodeEscaped(_ buffer: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> String {
        guard case .string(let text)? = try? parse(UnsafeBufferPointer(rebasing: buffer[(start - 1)...end])) else { return "" }
        return text
    }
}

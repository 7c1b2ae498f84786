/// The normalisation rules of the spec (§4), as pure functions.
public enum Normalise {
    /// False for null, empty or white-space strings, and empty arrays or objects.
    public static func isPresent(_ value: JSON) -> Bool {
        switch value {
        case .null: return false
        case .string(let s):
            // Without allocating: any byte that is not ASCII white space; non-ASCII bytes
            // (which may be Unicode white space) take the full check. The same white space as
            // trimmingWhitespace() (tab, LF, VT, FF, CR, space, Unicode's): a value that trims
            // to nothing is absent, so it never hides the next path.
            for byte in s.utf8 {
                if byte >= 0x80 { return !s.trimmingWhitespace().isEmpty }
                if byte != 0x20, !(0x09...0x0D).contains(byte) { return true }
            }
            return false
        case .array(let a): return !a.isEmpty
        case .object(let o): return !o.keys.isEmpty
        case .bool, .number: return true
        }
    }

    static func presentValue(_ value: JSON) -> JSON? {
        isPresent(value) ? value : nil
    }

    /// A scalar as trimmed text: strings trimmed, numbers as written (ids become strings
    /// with every digit). `nil` for anything empty or not a scalar.
    public static func text(_ value: JSON) -> String? {
        switch value {
        case .string(let s):
            let t = s.trimmingWhitespace()
            return t.isEmpty ? nil : t
        case .number(let literal):
            return literal
        default:
            return nil
        }
    }

    /// A JSON number, or a string holding one (`"22.53"`). No symbols, no separators,
    /// nothing non-finite.
    public static func number(_ value: JSON) -> Double? {
        let text: String
        switch value {
        case .number(let literal): text = literal
        case .string(let s): text = s.trimmingWhitespace()
        default: return nil
        }
        if let exact = plainDecimal(text) { return exact }
        guard !text.isEmpty, text.utf8.allSatisfy({ isDigit($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
                || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }),
              let number = Double(text), number.isFinite else { return nil }
        return number
    }

    /// Powers of ten a Double holds exactly.
    private static let exactPowersOfTen: [Double] = (0...22).map { Double("1e\($0)")! }

    /// `-?digits(.digits)?` with at most 15 digits in all, without `strtod`: the digits as an
    /// integer (exact below 2^53) divided by an exact power of ten is the correctly rounded
    /// value (one IEEE division of exact operands; Clinger's fast path), so it equals
    /// `Double(text)`. Anything else (exponents, more digits, `+`) is nil: the caller parses it.
    static func plainDecimal(_ text: String) -> Double? {
        var text = text
        return text.withUTF8 { plainDecimal(utf8: $0) }  // a buffer: a small String's view unpacks it per byte
    }

    /// ``plainDecimal(_:)`` of text's UTF-8 bytes (a payload's number, read in place).
    static func plainDecimal<Bytes: Sequence<UInt8>>(utf8: Bytes) -> Double? {
        var mantissa: UInt64 = 0
        var digits = 0
        var fraction = -1
        var negative = false
        var index = 0
        for byte in utf8 {
            defer { index &+= 1 }
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                digits &+= 1
                guard digits <= 15 else { return nil }
                mantissa = mantissa &* 10 &+ UInt64(byte &- UInt8(ascii: "0"))
                if fraction >= 0 { fraction &+= 1 }
            case UInt8(ascii: "."):
                guard fraction < 0, digits > 0 else { return nil }
                fraction = 0
            case UInt8(ascii: "-"):
                guard index == 0 else { return nil }
                negative = true
            default:
                return nil
            }
        }
        guard digits > 0, fraction != 0 else { return nil }  // "", "-", "1."
        let magnitude = Double(mantissa) / exactPowersOfTen[max(fraction, 0)]
        return negative ? -magnitude : magnitude
    }

    /// A whole number, from a number or a string (`2`, `2.0`, `"2"`).
    public static func integer(_ value: JSON) -> Int64? {
        integer(number: number(value))
    }

    /// The whole number `number` is, or nil (a fraction, or too large to be exact).
    static func integer(number: Double?) -> Int64? {
        // The truncating conversion gives an integral value back (no call to libm's round).
        guard let number, abs(number) < 9e15, Double(Int64(number)) == number else { return nil }
        return Int64(number)
    }

    /// `true`/`false`, `"true"`/`"false"`, `1`/`0`.
    public static func bool(_ value: JSON) -> Bool? {
        switch value {
        case .bool(let b): return b
        case .number(let literal): return literal == "1" ? true : literal == "0" ? false : nil
        case .string(let s):
            switch s.trimmingWhitespace().lowercased() {
            case "true", "1": return true
            case "false", "0": return false
            default: return nil
            }
        default: return nil
        }
    }

    /// A device advertising id (IDFA uppercase, GAID lowercase: TikTok's forms), trimmed by
    /// the caller. A SHA-256 is kept (lowercased). `nil` for anything that is not a UUID, and
    /// for the all-zero id a device reports when tracking is limited (it identifies no one).
    public static func advertisingID(_ text: String, uppercase: Bool) -> String? {
        if text.isSHA256Hex { return text.lowercased() }
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return nil }
        for (i, b) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(i) { guard b == UInt8(ascii: "-") else { return nil } } else { guard isHexDigit(b) else { return nil } }
        }
        guard bytes.contains(where: { $0 != UInt8(ascii: "0") && $0 != UInt8(ascii: "-") }) else { return nil }
        return uppercase ? text.uppercased() : text.lowercased()
    }

    /// iOS App Tracking Transparency status as TikTok names it: `AUTHORIZED`, `DENIED`,
    /// `NOT_DETERMINED`, `RESTRICTED` or `NOT_APPLICABLE`, from those names in any case,
    /// Apple's (`notDetermined`, `authorized`…) or its raw values 0–3.
    public static func attStatus(_ value: JSON) -> String? {
        guard let text = text(value) else { return nil }
        let folded = String(text.lowercased().filter { $0 != "_" && $0 != " " && $0 != "-" })
        switch folded {
        case "authorized", "3": return "AUTHORIZED"
        case "denied", "2": return "DENIED"
        case "notdetermined", "0": return "NOT_DETERMINED"
        case "restricted", "1": return "RESTRICTED"
        case "notapplicable": return "NOT_APPLICABLE"
        default: return nil
        }
    }

    /// Trimmed (by the caller) and lowercased; `nil` for something that is not an address.
    public static func email(_ text: String) -> String? {
        guard text.utf8.contains(UInt8(ascii: "@")) else { return nil }  // bytes: Character search cost ~3k instructions
        return text.lowercased()
    }

    /// E.164: `+`, country code, digits only, 8 to 15 digits.
    ///
    /// Spaces, dots, dashes and brackets are removed; a `00` prefix becomes `+`; a number
    /// with neither gets `defaultCountryCode` after its national leading `0` is dropped.
    /// Returns `nil` when the result cannot be E.164 (the caller drops the phone).
    public static func phone(_ text: String, defaultCountryCode: String?) -> String? {
        var text = text
        // ASCII (nearly every phone): its bytes are its scalars, read in place (no array of
        // scalars, no Unicode properties); anything else is decoded first.
        if let fromASCII = text.withUTF8({ bytes -> String?? in
            guard bytes.allSatisfy({ $0 < 0x80 }) else { return nil }
            return .some(phoneDigits(bytes.lazy.map { Unicode.Scalar($0) }, defaultCountryCode: defaultCountryCode))
        }) {
            return fromASCII
        }
        return phoneDigits(Array(text.unicodeScalars), defaultCountryCode: defaultCountryCode)
    }

    private static func phoneDigits<C: RandomAccessCollection>(_ scalars: C, defaultCountryCode: String?) -> String? where C.Element == Unicode.Scalar, C.Index == Int {
        var digits: [UInt8] = []
        digits.reserveCapacity(16)
        var international = false
        var i = 0
        while i < scalars.count {
            let scalar = scalars[i]
            defer { i += 1 }
            switch scalar {
            case "0"..."9":
                digits.append(UInt8(scalar.value))
            case "+", "\u{FF0B}":
                // Only a leading plus (possibly inside an opening bracket) is allowed.
                guard digits.isEmpty, !international else { return nil }
                international = true
            case "(" where (1...3).contains(digits.count - (international ? 0 : digits.starts(with: [0x30, 0x30]) ? 2 : 99))
                && i + 2 < scalars.count && scalars[i + 1] == "0" && scalars[i + 2] == ")":
                // `+33 (0)6 12 34 56 78`, `0033 (0)6…`: the national trunk 0 written beside the
                // country code is not dialled from abroad; keeping it would hash a wrong number.
                i += 2
            case ".", "(", ")", "/", "[", "]", " ", "-":
                continue
            default:
                // Any white space (no-break, thin, ideographic…) and any dash (hyphen, en and em
                // dashes, the minus sign) separate groups of digits.
                if scalar.properties.isWhitespace || scalar.properties.generalCategory == .dashPunctuation || scalar == "\u{2212}" { continue }
                return nil
            }
        }
        if !international {
            if digits.starts(with: [0x30, 0x30]) {
                digits.removeFirst(2)
            } else if let country = defaultCountryCode, !country.isEmpty, country.utf8.allSatisfy(isDigit) {
                if digits.first == UInt8(ascii: "0") { digits.removeFirst() }
                digits.insert(contentsOf: country.utf8, at: 0)
            } else {
                return nil
            }
        }
        guard (8...15).contains(digits.count), digits.first != UInt8(ascii: "0") else { return nil }
        return "+" + String(decoding: digits, as: UTF8.self)
    }

    /// A syntactic check for an IPv4 dotted quad or an IPv6 address.
    public static func isIPAddress(_ text: String) -> Bool {
        // On the UTF-8 bytes, without splitting into substrings (this runs for every event).
        var text = text
        return text.withUTF8 { b -> Bool in
            if b.contains(UInt8(ascii: ":")) {
                var colons = 0
                for byte in b {
                    if byte == UInt8(ascii: ":") { colons += 1 } else if !isHexDigit(byte) && byte != UInt8(ascii: ".") { return false }
                }
                return b.count <= 45 && colons >= 2
            }
            // Dotted quad: four groups of 1-3 digits, each at most 255.
            var groups = 0, digits = 0, value = 0
            for byte in b {
                if byte == UInt8(ascii: ".") {
                    guard digits > 0 else { return false }
                    groups += 1
                    digits = 0
                    value = 0
                } else if isDigit(byte) {
                    digits += 1
                    value = value * 10 + Int(byte &- UInt8(ascii: "0"))
                    guard digits <= 3, value <= 255 else { return false }
                } else {
                    return false
                }
            }
            return groups == 3 && digits > 0
        }
    }


    @inline(__always)
    static func isDigit(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "0") < 10 }

    @inline(__always)
    static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20)
    }
}

/// Event times in any of the forms the spec allows, as integer Unix seconds.
public enum EventTime {
    /// Epoch milliseconds or seconds (a number or a string of digits; values of 10^11 and
    /// more are milliseconds), or an ISO 8601 date-time with a UTC offset. `nil` otherwise.
    public static func seconds(from value: JSON) -> Int64? {
        switch value {
        case .number(let literal):
            return fromEpoch(literal)
        case .string(let s):
            let text = s.trimmingWhitespace()
            if let epoch = fromEpoch(text) { return epoch }
            return fromISO8601(text)
        default:
            return nil
        }
    }

    /// Digits with an optional fraction and exponent (`1639044446636`, `1.639044446636E12`, as
    /// Java/Jackson write doubles).
    private static func fromEpoch(_ text: String) -> Int64? {
        var text = text
        let plain: Double?? = text.withUTF8 { bytes in  // a buffer: a small String's view unpacks it per byte
            guard let first = bytes.first, Normalise.isDigit(first),
                  bytes.allSatisfy({ Normalise.isDigit($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E")
                      || $0 == UInt8(ascii: "+") }) else { return .none }
            return .some(Normalise.plainDecimal(utf8: bytes))
        }
        guard case .some(let fast) = plain, let number = fast ?? Double(text), number.isFinite, number > 0,
              number < 1e16 else { return nil }  // 10^16 ms is the year 318,857: beyond that it is not a time
        return number >= 1e11 ? Int64(checked: number / 1000) : Int64(checked: number)
    }

    /// `YYYY-MM-DDTHH:MM[:SS[.fff]](Z|±HH[:]MM|±HH)`; a space may stand for the `T`.
    public static func fromISO8601(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in 0..<n {
                guard Normalise.isDigit(b[i + k]) else { return nil }
                v = v * 10 + Int(b[i + k] - UInt8(ascii: "0"))
            }
            i += n
            return v
        }
        func expect(_ c: Character) -> Bool {
            guard i < b.count, b[i] == c.asciiValue! else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect("-"), let month = digits(2), expect("-"), let day = digits(2),
              i < b.count, b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: "t") || b[i] == UInt8(ascii: " ") else { return nil }
        i += 1
        guard let hour = digits(2), expect(":"), let minute = digits(2) else { return nil }
        var second = 0
        if expect(":") {
            guard let s = digits(2) else { return nil }
            second = s
            if expect(".") || expect(",") {
                let start = i
                while i < b.count, Normalise.isDigit(b[i]) { i += 1 }
                guard i > start else { return nil }
            }
        }
        var offset = 0
        guard i < b.count else { return nil }  // an offset is required: local time is ambiguous
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let oh = digits(2) else { return nil }
            var om = 0
            if i < b.count {
                _ = expect(":")
                guard let m = digits(2) else { return nil }
                om = m
            }
            guard oh <= 23, om <= 59 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count, (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day),
              hour <= 23, minute <= 59, second <= 60 else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        return Int64(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

/// Cookies from a raw `Cookie` header string or a `cookies` object.
enum Cookies {
    static let headerPaths: [[String]] = [["context", "device", "cookie"], ["device", "cookie"]]
    static let objectPaths: [[String]] = [["cookies"], ["context", "cookies"], ["context", "device", "cookies"], ["device", "cookies"]]

    /// The names looked up, as one-segment paths.
    static let ttp = ["_ttp"], ttclid = ["ttclid"]

    /// The cookie `name` (a one-segment path: ``ttp``, ``ttclid``) of `source`: from the first
    /// `cookies` object that has it (percent-decoded), else from the first cookie header.
    /// `objectSlots` and `headerSlots`: the paths' slots where `source` has located paths (see
    /// ``PathReadable/document(at:slot:)``), in the order of the paths. Headers are read on
    /// their bytes, in place.
    static func value<S: PathReadable>(_ name: [String], in source: S, objectSlots: [Int32] = [], headerSlots: [Int32] = []) -> String? {
        for k in objectPaths.indices {
            guard let object = source.document(at: objectPaths[k], slot: k < objectSlots.count ? objectSlots[k] : -1), object.isObject else { continue }
            if let value = object.document(at: name)?.text { return PercentDecoding.decode(value) }
        }
        for k in headerPaths.indices {
            guard let header = source.document(at: headerPaths[k], slot: k < headerSlots.count ? headerSlots[k] : -1) else { continue }
            if let found = header.withStringBytes({ Bytes.pairValue(named: name[0], in: $0, separator: UInt8(ascii: ";"), end: nil) }), let value = found {
                return value
            }
        }
        return nil
    }
}

/// Query parameters of a URL.
enum URLQuery {
    static func value(named name: String, in url: String) -> String? {
        var url = url
        return url.withUTF8 { buffer in
            // The query ends at '#'; a '?' inside the fragment (single-page apps' routes) starts no query.
            let q = Bytes.firstOf(UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: "#"), in: buffer, from: 0)
            guard q < buffer.count, buffer[q] == UInt8(ascii: "?") else { return nil }
            return Bytes.pairValue(named: name, in: UnsafeBufferPointer(rebasing: buffer[(q + 1)...]),
                                   separator: UInt8(ascii: "&"), end: UInt8(ascii: "#"))
        }
    }
}

/// `name=value` lists (cookie headers, query strings) scanned as bytes: the hot path reads
/// one per event, and Character-level splitting cost more than the rest of the transform.
enum Bytes {
    /// `range` of `bytes` without leading and trailing ASCII white space (tab, LF, VT, FF,
    /// CR, space); nil when what is left starts or ends with a non-ASCII byte, which may be
    /// Unicode white space (the caller decides with Unicode's rules).
    static func trimmingASCIIWhitespace(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int>? {
        var start = range.lowerBound
        var end = range.upperBound
        while start < end, bytes[start] == 0x20 || (0x09...0x0D).contains(bytes[start]) { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || (0x09...0x0D).contains(bytes[end - 1]) { end -= 1 }
        if start == end { return start..<end }
        guard bytes[start] < 0x80, bytes[end - 1] < 0x80 else { return nil }
        return start..<end
    }

    static func pairValue(named name: String, in text: String, separator: UInt8, end: UInt8?) -> String? {
        var text = text
        return text.withUTF8 { pairValue(named: name, in: $0, separator: separator, end: end) }
    }

    /// The percent-decoded, trimmed value of the first non-empty `name=value` pair.
    /// `separator` and `end` are ASCII punctuation below 0x40 (`;`, `&`, `#`).
    static func pairValue(named name: String, in buffer: UnsafeBufferPointer<UInt8>, separator: UInt8, end: UInt8?) -> String? {
        var name = name
        return name.withUTF8 { key -> String? in
            // Separators and spaces are skipped testing a set with one shift (all below 0x40);
            // names and values are scanned eight bytes at a time.
            let ends = end.map { set($0) } ?? 0
            let skipped = set(separator) | set(0x20) | set(0x09)
            let stop = end ?? separator
            var i = 0
            let n = buffer.count
            while i < n {
                if isIn(ends, buffer[i]) { return nil }
                while i < n, isIn(skipped, buffer[i]) { i &+= 1 }
                let nameStart = i
                i = firstOf(UInt8(ascii: "="), separator, stop, in: buffer, from: i)
                var nameEnd = i
                while nameEnd > nameStart, buffer[nameEnd &- 1] == 0x20 { nameEnd &-= 1 }
                guard i < n, buffer[i] == UInt8(ascii: "=") else { continue }
                i &+= 1
                var valueStart = i
                i = firstOf(separator, stop, stop, in: buffer, from: i)
                var valueEnd = i
                guard nameEnd &- nameStart == key.count,
                      equal(buffer.baseAddress! + nameStart, key.baseAddress!, count: key.count) else { continue }
                while valueStart < valueEnd, buffer[valueStart] == 0x20 || buffer[valueStart] == 0x09 { valueStart &+= 1 }
                while valueEnd > valueStart, buffer[valueEnd &- 1] == 0x20 || buffer[valueEnd &- 1] == 0x09 { valueEnd &-= 1 }
                guard valueEnd > valueStart else { continue }
                let value = PercentDecoding.decode(UnsafeBufferPointer(rebasing: buffer[valueStart..<valueEnd])).trimmingWhitespace()
                if !value.isEmpty { return value }
            }
            return nil
        }
    }

    /// The first offset at or after `start` holding `a`, `b` or `c`, or `buffer.count`,
    /// looking eight bytes at a time.
    @inline(__always)
    static func firstOf(_ a: UInt8, _ b: UInt8, _ c: UInt8, in buffer: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var i = start
        if let base = buffer.baseAddress {
            while i &+ 8 <= buffer.count {
                let word = JSONBytes.word(at: base + i)
                let found = JSONBytes.flags(word, equalTo: a) | JSONBytes.flags(word, equalTo: b) | JSONBytes.flags(word, equalTo: c)
                if found != 0 { return i &+ found.trailingZeroBitCount &>> 3 }
                i &+= 8
            }
        }
        while i < buffer.count {
            let byte = buffer[i]
            if byte == a || byte == b || byte == c { return i }
            i &+= 1
        }
        return i
    }

    /// The first offset at or after `start` holding `byte`, or `buffer.count`.
    @inline(__always)
    static func firstOf(_ byte: UInt8, in buffer: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        firstOf(byte, byte, byte, in: buffer, from: start)
    }

    /// A set of one byte below 0x40, as a bit (sets are unions: `set(a) | set(b)`).
    @inline(__always)
    static func set(_ byte: UInt8) -> UInt64 { 1 &<< UInt64(byte & 0x3F) }

    /// Whether `byte` is in `set` (see ``set(_:)``).
    @inline(__always)
    static func isIn(_ set: UInt64, _ byte: UInt8) -> Bool {
        byte < 0x40 && (set &>> UInt64(byte)) & 1 != 0
    }

    /// Whether `bytes` are `literal`'s.
    @inline(__always)
    static func equal(_ bytes: UnsafeBufferPointer<UInt8>, _ literal: StaticString) -> Bool {
        literal.withUTF8Buffer { expected in
            bytes.count == expected.count && (bytes.isEmpty || equal(bytes.baseAddress!, expected.baseAddress!, count: bytes.count))
        }
    }

    /// Whether `count` bytes at `a` and at `b` are the same, eight at a time.
    @inline(__always)
    static func equal(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, count: Int) -> Bool {
        var k = 0
        while k &+ 8 <= count {
            if UnsafeRawPointer(a + k).loadUnaligned(as: UInt64.self) != UnsafeRawPointer(b + k).loadUnaligned(as: UInt64.self) { return false }
            k &+= 8
        }
        while k < count {
            if a[k] != b[k] { return false }
            k &+= 1
        }
        return true
    }
}

enum PercentDecoding {
    /// Decodes `%XX` sequences; malformed ones are kept as written.
    static func decode(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
        var text = text
        return text.withUTF8 { decode($0) }
    }

    static func decode(_ b: UnsafeBufferPointer<UInt8>) -> String {
        guard Bytes.firstOf(UInt8(ascii: "%"), in: b, from: 0) < b.count else { return String(decoding: b, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let hi = hexValue(b[i + 1]), let lo = hexValue(b[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// TikTok's list of supported ISO 4217 currency codes.
public enum Currency {
    public static let supported: Set<String> = [
        "AED", "ARS", "AUD", "BDT", "BHD", "BIF", "BOB", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CRC", "CZK",
        "DKK", "DZD", "EGP", "EUR", "GBP", "GTQ", "HKD", "HNL", "HUF", "IDR", "ILS", "INR", "ISK", "JPY", "KES",
        "KHR", "KRW", "KWD", "KZT", "MAD", "MOP", "MXN", "MYR", "NGN", "NIO", "NOK", "NZD", "OMR", "PEN", "PHP",
        "PKR", "PLN", "PYG", "QAR", "RON", "RUB", "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "UAH", "USD", "VES",
        "VND", "ZAR",
    ]

    public static func isSupported(_ code: String) -> Bool { supported.contains(code) }
}

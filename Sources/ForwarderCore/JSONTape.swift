/// A JSON document as a flat list of nodes over its bytes (see `JSONParser.tape`): the
/// transform's view of a payload. Looking a path up compares key bytes in place; a `JSON`
/// value (and its Strings) is made only for the value found. One tape per worker is reused
/// from event to event, so parsing allocates nothing once its node array has grown.
public struct JSONTape {
    public struct Node: Sendable {
        public enum Kind: UInt8, Sendable { case null, `true`, `false`, number, string, escapedString, array, object }
        var kind: Kind
        /// Strings: the first byte after the opening quote. Others: the first byte.
        var start: Int32
        /// Strings: the closing quote. Others: one past the last byte.
        var end: Int32
        /// The index of the node after this value and everything inside it.
        var next: Int32
    }

    /// Room for a document's nodes, reused from document to document (one per transformer,
    /// so one per worker): parsing allocates nothing once it has grown to a worker's largest
    /// payload. Appending is a compare and a store (an `Array` append also checks that the
    /// array is uniquely referenced: the parse took a fifth less without it).
    final class Nodes {
        fileprivate var base: UnsafeMutablePointer<Node>
        fileprivate var capacity: Int

        init(capacity: Int = 256) {
            self.capacity = max(capacity, 16)
            base = .allocate(capacity: self.capacity)
        }

        deinit { base.deallocate() }

        /// The parser's cursor into the storage: plain values, so the parser's appends stay
        /// in registers; ``done(_:)`` hands a grown allocation back.
        struct Writer {
            private(set) var base: UnsafeMutablePointer<Node>
            private var capacity: Int
            private(set) var count = 0

            init(_ nodes: Nodes) {
                base = nodes.base
                capacity = nodes.capacity
            }

            @inline(__always)
            mutating func append(_ node: Node) {
                if count == capacity { grow() }
                base[count] = node
                count &+= 1
            }

            /// Sets the end and the next node of the container node at `index`, whose
            /// members have all been appended.
            @inline(__always)
            mutating func finish(_ index: Int, end: Int32) {
                base[index].end = end
                base[index].next = Int32(truncatingIfNeeded: count)
            }

            @inline(never)
            private mutating func grow() {
                let wanted = capacity.multipliedReportingOverflow(by: 2).partialValue
                let larger = UnsafeMutablePointer<Node>.allocate(capacity: wanted)
                larger.moveInitialize(from: base, count: count)
                base.deallocate()
                base = larger
                capacity = wanted
            }

            /// Gives the storage back its allocation (grown or not).
            func done(_ nodes: Nodes) {
                nodes.base = base
                nodes.capacity = capacity
            }
        }
    }

    /// One document's bytes and nodes; valid while both are.
    public struct View {
        let bytes: UnsafeBufferPointer<UInt8>
        let nodes: UnsafeBufferPointer<Node>
        /// The node this view stands for.
        let index: Int
        /// For the document's own view: the nodes ``PathIndex/locate(_:into:)`` found, by
        /// slot. Views inside the document have none (their paths are walked).
        var located: UnsafeBufferPointer<Int32>? = nil
    }
}

/// What the transform reads from a source event: members along paths, materialised as
/// `JSON` only once found. `JSON` itself is one (the `transform` command, tests); the
/// daemon's hot path reads a ``JSONTape/View``.
protocol PathReadable {
    /// The value at `path` (keys; digits index arrays), not materialised, or nil.
    func document(at path: [String]) -> Self?
    /// The same, read from the located paths when this is a document's view with them and
    /// `slot` is `path`'s slot in the ``PathIndex`` that located them (-1: walk `path`).
    func document(at path: [String], slot: Int32) -> Self?
    /// Whether this is a document's view with located paths: then ``document(slot:)``
    /// reads them (the hot path's lookups, with no path at hand).
    var isLocated: Bool { get }
    /// The node located for `slot` (a slot of the index that located them), or nil.
    func document(slot: Int32) -> Self?
    /// This value, materialised.
    var json: JSON { get }
    /// ``Normalise/text(_:)`` of this value: trimmed text of a string or a number.
    var text: String? { get }
    /// An array's elements, or nil for anything else.
    var arrayElements: [Self]? { get }
    var isObject: Bool { get }
    /// ``Normalise/isPresent(_:)``, without materialising.
    var isPresent: Bool { get }
    /// ``Normalise/number(_:)`` of this value (plain decimals read in place).
    var numericValue: Double? { get }
    /// `body` of this string's UTF-8 bytes (in place for a payload's string without
    /// escapes), or nil for anything that is not a string.
    func withStringBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R?
    /// `body` of each member of this object in order (name as UTF-8 bytes, escapes decoded;
    /// value), nothing for anything else: several members read in one pass.
    func forEachMember(_ body: (UnsafeBufferPointer<UInt8>, Self) -> Void)
}

extension PathReadable {
    /// ``Normalise/integer(_:)`` of this value.
    var integerValue: Int64? { Normalise.integer(number: numericValue) }
    /// The value itself when it is present (``isPresent``), else nil.
    var presentValue: Self? { isPresent ? self : nil }
    /// The value at `path`, materialised.
    func value(at path: [String]) -> JSON? { document(at: path)?.json }
    /// ``Normalise/text(_:)`` of the value at `path`.
    func text(at path: [String]) -> String? { document(at: path)?.text }
}

extension JSON: PathReadable {
    var isObject: Bool { if case .object = self { return true } else { return false } }
    func document(at path: [String]) -> JSON? { value(at: path) }
    func document(at path: [String], slot: Int32) -> JSON? { value(at: path) }
    var isLocated: Bool { false }
    func document(slot: Int32) -> JSON? { nil }
    var json: JSON { self }
    var text: String? { Normalise.text(self) }
    var arrayElements: [JSON]? { if case .array(let elements) = self { return elements } else { return nil } }
    var isPresent: Bool { Normalise.isPresent(self) }
    var numericValue: Double? { Normalise.number(self) }
    func withStringBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R? {
        guard case .string(var string) = self else { return nil }
        return string.withUTF8(body)
    }
    func forEachMember(_ body: (UnsafeBufferPointer<UInt8>, JSON) -> Void) {
        guard case .object(let object) = self else { return }
        for i in object.keys.indices {
            var name = object.keys[i]
            name.withUTF8 { body($0, object.values[i]) }
        }
    }
}

extension JSONTape.View: PathReadable {
    var isObject: Bool { nodes[index].kind == .object }

    var json: JSON { json(at: index) }

    /// Trims the string's bytes in place and makes one String of what is left (no `JSON`
    /// value, no second String); escapes and non-ASCII edges take ``Normalise/text(_:)``.
    var text: String? {
        let found = index
        let n = nodes[found]
        switch n.kind {
        case .number:
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[Int(n.start)..<Int(n.end)]), as: UTF8.self)
        case .string:
            guard let range = Bytes.trimmingASCIIWhitespace(bytes, Int(n.start)..<Int(n.end)) else {
                return Normalise.text(json(at: found))  // maybe Unicode white space
            }
            return range.isEmpty ? nil : String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        case .escapedString:
            return Normalise.text(json(at: found))
        case .null, .true, .false, .array, .object:
            return nil
        }
    }

    /// Plain decimals (a number, or a string of one with ASCII white space around it) are
    /// read on their bytes; anything else takes ``Normalise/number(_:)``, which gives the same
    /// answer for those.
    var numericValue: Double? {
        let n = nodes[index]
        switch n.kind {
        case .number:
            if let value = Normalise.plainDecimal(utf8: UnsafeBufferPointer(rebasing: bytes[Int(n.start)..<Int(n.end)])) { return value }
        case .string:
            if let range = Bytes.trimmingASCIIWhitespace(bytes, Int(n.start)..<Int(n.end)),
               let value = Normalise.plainDecimal(utf8: UnsafeBufferPointer(rebasing: bytes[range])) { return value }
        case .null, .true, .false, .array, .object:
            return nil
        case .escapedString:
            break
        }
        return Normalise.number(json)
    }

    func withStringBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R? {
        let n = nodes[index]
        switch n.kind {
        case .string:
            return body(UnsafeBufferPointer(rebasing: bytes[Int(n.start)..<Int(n.end)]))
        case .escapedString:
            var decoded = JSONParser.decodeEscaped(bytes, from: Int(n.start), to: Int(n.end))
            return decoded.withUTF8(body)
        case .null, .true, .false, .number, .array, .object:
            return nil
        }
    }

    @inline(__always)
    func forEachMember(_ body: (UnsafeBufferPointer<UInt8>, JSONTape.View) -> Void) {
        let object = nodes[index]
        guard object.kind == .object else { return }
        var i = index &+ 1
        while i < Int(object.next) {
            let name = nodes[i]
            let value = JSONTape.View(bytes: bytes, nodes: nodes, index: i &+ 1)
            if name.kind == .string {
                body(UnsafeBufferPointer(rebasing: bytes[Int(name.start)..<Int(name.end)]), value)
            } else {
                var decoded = JSONParser.decodeEscaped(bytes, from: Int(name.start), to: Int(name.end))
                decoded.withUTF8 { body($0, value) }
            }
            i = Int(nodes[i &+ 1].next)
        }
    }

    func document(at path: [String]) -> JSONTape.View? {
        node(at: path).map { JSONTape.View(bytes: bytes, nodes: nodes, index: $0) }
    }

    func document(at path: [String], slot: Int32) -> JSONTape.View? {
        guard located != nil, slot >= 0 else { return document(at: path) }
        return document(slot: slot)
    }

    var isLocated: Bool { located != nil }

    func document(slot: Int32) -> JSONTape.View? {
        guard let located else { return nil }
        let found = located[Int(slot)]
        return found < 0 ? nil : JSONTape.View(bytes: bytes, nodes: nodes, index: Int(found))
    }

    var arrayElements: [JSONTape.View]? {
        let n = nodes[index]
        guard n.kind == .array else { return nil }
        var count = 0
        var i = index + 1
        while i < Int(n.next) { count += 1; i = Int(nodes[i].next) }
        var elements: [JSONTape.View] = []
        elements.reserveCapacity(count)  // one allocation, not one per doubling
        i = index + 1
        while i < Int(n.next) {
            elements.append(JSONTape.View(bytes: bytes, nodes: nodes, index: i))
            i = Int(nodes[i].next)
        }
        return elements
    }

    var isPresent: Bool {
        let n = nodes[index]
        switch n.kind {
        case .null: return false
        case .true, .false, .number: return true
        case .array, .object: return Int(n.next) > index + 1
        case .string:
            for i in Int(n.start)..<Int(n.end) {
                let byte = bytes[i]
                if byte >= 0x80 { return Normalise.isPresent(json(at: index)) }
                if byte != 0x20, !(0x09...0x0D).contains(byte) { return true }
            }
            return false
        case .escapedString:
            return Normalise.isPresent(json(at: index))
        }
    }

    private func node(at path: [String]) -> Int? {
        var current = index
        for segment in path {
            guard let next = child(of: current, segment) else { return nil }
            current = next
        }
        return current
    }

    /// The member `key` of an object node, or element `key` (digits) of an array node.
    private func child(of node: Int, _ key: String) -> Int? {
        let container = nodes[node]
        switch container.kind {
        case .object:
            // The key's contiguous bytes: no copy of the String (a retain and release per call).
            if let found = key.utf8.withContiguousStorageIfAvailable({ member(of: node, named: $0) }) { return found }
            var copy = key
            return copy.withUTF8 { member(of: node, named: $0) }
        case .array:
            guard let wanted = Int(key), wanted >= 0 else { return nil }
            var i = node + 1
            var position = 0
            while i < Int(container.next) {
                if position == wanted { return i }
                i = Int(nodes[i].next)
                position += 1
            }
            return nil
        default:
            return nil
        }
    }

    /// The value of the first member of object node `node` whose name is `wanted`.
    private func member(of node: Int, named wanted: UnsafeBufferPointer<UInt8>) -> Int? {
        var i = node &+ 1
        let end = Int(nodes[node].next)
        while i < end {
            let name = nodes[i]
            let value = i &+ 1
            if name.kind == .string {
                let count = Int(name.end &- name.start)
                if count == wanted.count, count == 0 || Bytes.equal(bytes.baseAddress! + Int(name.start), wanted.baseAddress!, count: count) {
                    return value
                }
            } else if JSONParser.decodeEscaped(bytes, from: Int(name.start), to: Int(name.end)).utf8.elementsEqual(wanted) {
                return value
            }
            i = Int(nodes[value].next)
        }
        return nil
    }

    /// The `JSON` of a node and everything inside it.
    func json(at node: Int) -> JSON {
        let n = nodes[node]
        switch n.kind {
        case .null: return .null
        case .true: return .bool(true)
        case .false: return .bool(false)
        case .number, .string:
            return (n.kind == .number ? JSON.number : JSON.string)(String(decoding: UnsafeBufferPointer(rebasing: bytes[Int(n.start)..<Int(n.end)]), as: UTF8.self))
        case .escapedString:
            return .string(JSONParser.decodeEscaped(bytes, from: Int(n.start), to: Int(n.end)))
        case .array:
            var elements: [JSON] = []
            var i = node + 1
            while i < Int(n.next) {
                elements.append(json(at: i))
                i = Int(nodes[i].next)
            }
            return .array(elements)
        case .object:
            var object = JSONObject()
            var i = node + 1
            while i < Int(n.next) {
                guard case .string(let key) = json(at: i) else { break }
                object.append(key, json(at: i + 1))
                i = Int(nodes[i + 1].next)
            }
            return .object(object)
        }
    }
}

/// The paths a transformer reads from the top of an event, merged into a trie, so that one
/// walk over a payload's tape finds all of them: each object on the way is read member by
/// member once, its names compared with the keys the trie has at that depth. Looking each
/// path up on its own walked the same members again for every path (an event made ~85
/// lookups of ~170 instructions each, most of them for members that are not there).
///
/// A path's slot is its trie node. ``locate(_:into:)`` fills one entry per slot with the
/// tape node found there, or -1, by the rule of ``JSONTape/View``'s own walk: the first
/// member of a name (escaped names decoded), digits index arrays (as `Int(_:)` reads them).
struct PathIndex {
    private struct Edge {
        /// The key's bytes: `keys[keyStart ..< keyStart + keyCount]`.
        var keyStart: Int32
        var keyCount: Int32
        /// The key as an array position, or -1.
        var position: Int32
        /// The trie node (slot) this edge leads to.
        var target: Int32
    }

    /// Edges of trie node `n`: `edges[firstEdge[n] ..< firstEdge[n + 1]]`. Node 0 is the document.
    private let edges: [Edge]
    private let firstEdge: [Int32]
    private let keys: [UInt8]

    /// Slots: one per trie node.
    var slotCount: Int { firstEdge.count - 1 }

    /// Registers paths and hands out their slots; ``build()`` freezes them.
    struct Builder {
        private var children: [[(key: [UInt8], target: Int)]] = [[]]

        init() {}

        /// The slot of `path` (the same for the same path). The empty path is the document.
        mutating func slot(for path: [String]) -> Int32 {
            var node = 0
            for segment in path {
                let key = Array(segment.utf8)
                if let existing = children[node].first(where: { $0.key == key }) {
                    node = existing.target
                    continue
                }
                children.append([])
                children[node].append((key, children.count - 1))
                node = children.count - 1
            }
            return Int32(node)
        }

        func build() -> PathIndex {
            var edges: [Edge] = []
            var firstEdge: [Int32] = []
            var keys: [UInt8] = []
            for list in children {
                firstEdge.append(Int32(edges.count))
                for (key, target) in list {
                    let position = Int(String(decoding: key, as: UTF8.self)).flatMap { $0 >= 0 && $0 <= Int(Int32.max) ? Int32($0) : nil } ?? -1
                    edges.append(Edge(keyStart: Int32(keys.count), keyCount: Int32(key.count), position: position, target: Int32(target)))
                    keys.append(contentsOf: key)
                }
            }
            firstEdge.append(Int32(edges.count))
            keys.append(0)  // never empty: its buffer has an address even when every key is ""
            return PathIndex(edges: edges, firstEdge: firstEdge, keys: keys)
        }
    }

    /// Fills `slots` (resized to ``slotCount``) with the node each slot's path reaches in
    /// the document `view` stands for, or -1.
    func locate(_ view: JSONTape.View, into slots: inout [Int32]) {
        slots.removeAll(keepingCapacity: true)
        slots.append(contentsOf: repeatElement(-1, count: slotCount))
        slots.withUnsafeMutableBufferPointer { found in
            edges.withUnsafeBufferPointer { edges in
                firstEdge.withUnsafeBufferPointer { firstEdge in
                    keys.withUnsafeBufferPointer { keys in
                        found[0] = Int32(view.index)
                        Walk(view: view, edges: edges, firstEdge: firstEdge, keys: keys, found: found).visit(trie: 0, node: view.index)
                    }
                }
            }
        }
    }

    private struct Walk {
        let view: JSONTape.View
        let edges: UnsafeBufferPointer<Edge>
        let firstEdge: UnsafeBufferPointer<Int32>
        let keys: UnsafeBufferPointer<UInt8>
        let found: UnsafeMutableBufferPointer<Int32>

        func visit(trie: Int, node: Int) {
            let from = Int(firstEdge[trie]), to = Int(firstEdge[trie &+ 1])
            guard from < to else { return }
            let container = view.nodes[node]
            let end = Int(container.next)
            switch container.kind {
            case .object:
                var i = node &+ 1
                while i < end {
                    let name = view.nodes[i]
                    let value = i &+ 1
                    if name.kind == .string {
                        let count = Int(name.end &- name.start)
                        let start = view.bytes.baseAddress! + Int(name.start)
                        for e in from..<to {
                            let edge = edges[e]
                            if Int(edge.keyCount) == count, found[Int(edge.target)] < 0,
                               Bytes.equal(start, keys.baseAddress! + Int(edge.keyStart), count: count) {
                                take(edge, value)
                                break
                            }
                        }
                    } else {
                        var decoded = JSONParser.decodeEscaped(view.bytes, from: Int(name.start), to: Int(name.end))
                        decoded.withUTF8 { name in
                            for e in from..<to {
                                let edge = edges[e]
                                if Int(edge.keyCount) == name.count, found[Int(edge.target)] < 0,
                                   name.elementsEqual(UnsafeBufferPointer(rebasing: keys[Int(edge.keyStart) ..< Int(edge.keyStart) &+ name.count])) {
                                    take(edge, value)
                                    break
                                }
                            }
                        }
                    }
                    i = Int(view.nodes[value].next)
                }
            case .array:
                var i = node &+ 1
                var position: Int32 = 0
                while i < end {
                    for e in from..<to where edges[e].position == position && found[Int(edges[e].target)] < 0 {
                        take(edges[e], i)
                    }
                    i = Int(view.nodes[i].next)
                    position &+= 1
                }
            default:
                return
            }
        }

        private func take(_ edge: Edge, _ node: Int) {
            found[Int(edge.target)] = Int32(truncatingIfNeeded: node)
            visit(trie: Int(edge.target), node: node)
        }
    }
}

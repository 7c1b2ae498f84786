import CCrypto

/// SHA-256 through OpenSSL's low-level interface (`tf_sha256` in the CCrypto shim): ~3.1k
/// instructions per short string against ~6.2k through EVP, which looked up its provider,
/// under a lock, on every call even with a reused context (callgrind, 2026-12-02).
public final class SHA256Hasher {
    public init() {}

    /// The lowercase hex SHA-256 of the UTF-8 bytes of `text`.
    public func hexDigest(_ text: String) -> String {
        var copy = text
        return copy.withUTF8 { hexDigest(bytes: $0) }
    }

    public func hexDigest(bytes: UnsafeBufferPointer<UInt8>) -> String {
        var out = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &out) { raw in
            tf_sha256(bytes.baseAddress ?? UnsafePointer(bitPattern: 1)!, bytes.count, raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return withUnsafeBytes(of: &out) { raw in
            String(unsafeUninitializedCapacity: 64) { hex in
                let digits: StaticString = "0123456789abcdef"
                let table = UnsafeBufferPointer(start: digits.utf8Start, count: 16)
                for i in 0..<32 {
                    hex[2 * i] = table[Int(raw[i] >> 4)]
                    hex[2 * i + 1] = table[Int(raw[i] & 0x0F)]
                }
                return 64
            }
        }
    }
}

extension String {
    /// True for exactly 64 hexadecimal characters: a value that is already a SHA-256 digest
    /// and must never be hashed again (double hashing silently destroys matching).
    var isSHA256Hex: Bool {
        var copy = self
        return copy.withUTF8(Bytes.isSHA256Hex)
    }
}

extension Bytes {
    /// ``Swift/String/isSHA256Hex`` on UTF-8 bytes.
    static func isSHA256Hex(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        bytes.count == 64 && bytes.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte) || (0x41...0x46).contains(byte)
        }
    }
}

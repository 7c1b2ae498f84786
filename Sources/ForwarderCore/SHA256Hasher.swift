import CCrypto

/// SHA-256 with one reused OpenSSL digest context: about 0.13 µs per short string on this
/// machine, against 0.35 µs for a one-shot call that allocates a context each time.
///
/// Not thread-safe: each worker owns its own hasher (a ``Transformer`` holds one).
public final class SHA256Hasher {
    private let context: OpaquePointer
    private let digest: OpaquePointer

    public init() {
        guard let context = EVP_MD_CTX_new(), let digest = EVP_sha256() else {
            fatalError("libcrypto could not allocate a SHA-256 context (out of memory)")
        }
        self.context = context
        self.digest = digest
    }

    deinit {
        EVP_MD_CTX_free(context)
    }

    /// The lowercase hex SHA-256 of the UTF-8 bytes of `text`.
    public func hexDigest(_ text: String) -> String {
        var copy = text
        return copy.withUTF8 { hexDigest(bytes: $0) }
    }

    public func hexDigest(bytes: UnsafeBufferPointer<UInt8>) -> String {
        var out = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var length: UInt32 = 0
        withUnsafeMutableBytes(of: &out) { raw in
            let md = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            // These calls fail only on allocation failure inside OpenSSL.
            guard EVP_DigestInit_ex(context, digest, nil) == 1,
                  EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) == 1,
                  EVP_DigestFinal_ex(context, md, &length) == 1, length == 32 else {
                fatalError("libcrypto SHA-256 failed")
            }
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
        utf8.count == 64 && utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte) || (0x41...0x46).contains(byte)
        }
    }
}

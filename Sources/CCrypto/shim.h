#include <openssl/evp.h>
#include <openssl/sha.h>

// SHA-256 of one buffer through OpenSSL's low-level interface: the same assembly as EVP, without
// EVP's per-call provider lookup and locking (most of the cost of hashing a short string).
// The low-level calls are deprecated in OpenSSL 3 in favour of EVP, not removed.
static inline void tf_sha256(const unsigned char *data, size_t count, unsigned char digest[32]) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    SHA256_CTX context;
    SHA256_Init(&context);
    SHA256_Update(&context, data, count);
    SHA256_Final(digest, &context);
#pragma GCC diagnostic pop
}

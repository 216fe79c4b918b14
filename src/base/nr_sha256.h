/*
 * nr_sha256: SHA-256 (FIPS 180-4), streaming and one-shot.
 *
 * Used for content hashes (the store identifies a document's version by the
 * hex SHA-256 of its raw bytes) and checksums. Not constant-time with respect
 * to anything but the data length, which is fine for those uses; do not use
 * it for secrets.
 *
 *     struct nr_sha256 c;
 *     nr_sha256_init(&c);
 *     nr_sha256_update(&c, part1, n1);
 *     nr_sha256_update(&c, part2, n2);
 *     nr_sha256_final(&c, digest);     // 32 bytes
 *
 * The context holds no pointers and allocates nothing: copy it freely to
 * hash a common prefix once. After nr_sha256_final the context must be
 * initialised again before reuse.
 */
#ifndef NR_SHA256_H
#define NR_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define NR_SHA256_BYTES 32
#define NR_SHA256_HEX   65 /* 64 lowercase hex digits + NUL */

struct nr_sha256 {
    uint32_t h[8];         /* chaining state */
    uint64_t n_bytes;      /* bytes hashed so far */
    unsigned char buf[64]; /* partial block */
    size_t buf_len;        /* bytes in buf, < 64 */
};

void nr_sha256_init(struct nr_sha256 *c);
void nr_sha256_update(struct nr_sha256 *c, const void *data, size_t n);
void nr_sha256_final(struct nr_sha256 *c, unsigned char out[NR_SHA256_BYTES]);

/* One shot: digest of data[0, n). */
void nr_sha256(const void *data, size_t n, unsigned char out[NR_SHA256_BYTES]);
/* One shot, as 64 lowercase hex digits and a NUL. */
void nr_sha256_hex(const void *data, size_t n, char out[NR_SHA256_HEX]);
/* A digest as lowercase hex. */
void nr_sha256_to_hex(const unsigned char digest[NR_SHA256_BYTES], char out[NR_SHA256_HEX]);

#endif

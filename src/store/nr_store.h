/*
 * nr_store: the durable document store (SQLite in WAL mode + FTS5).
 *
 * It keeps collections of documents; each document is its extracted text,
 * cut into chunks (byte ranges of that text), each chunk with one embedding
 * vector and one full-text (BM25) index entry. The schema, the invariants and
 * why the SQLite settings are what they are: see the block at the top of
 * store.c.
 *
 *     struct nr_store *s;
 *     if (nr_store_open("data/nanorag.db", &s)) fail(nr_err_msg());
 *     int64_t id; int st;
 *     if (nr_store_has(s, "docs", "a.md", hash, model, &id) == 0) {
 *         ... load, chunk, embed ...
 *         nr_store_put(s, &doc, chunks, n, vectors, dim, model, &id, &st);
 *     }
 *     nr_store_close(s);
 *
 * Guarantees.
 *  - nr_store_put and nr_store_remove are atomic and durable: when they
 *    return NR_OK, the whole document (row, chunks, vectors, FTS entries) is
 *    on disk and survives a process kill or power loss; when they fail,
 *    nothing of the call is visible. A document is never half-present.
 *  - Every read is a consistent snapshot: a function that runs several
 *    queries runs them in one read transaction, so it never sees a document
 *    a concurrent writer is in the middle of replacing.
 *  - SQLITE_BUSY never surfaces: writers wait (busy timeout plus a bounded
 *    retry, about 30 s in all) and readers never wait for writers.
 *  - Errors are nr_status codes with a message (nr_err_msg) that says what
 *    failed; messages never contain filesystem paths. A handle stays usable
 *    after any error (after a failed write it reconnects on its next call).
 *
 * Threads and processes. A handle is used by one thread at a time. Any
 * number of handles, in threads or processes, may open the same file.
 * Never carry a handle across fork(): open a new one in the child.
 *
 * Ownership. Strings and arrays passed in are borrowed for the duration of
 * the call. Everything a function returns through a pointer-to-pointer is
 * owned by the caller and freed with the *_free function named next to it.
 * Ids are stable: a document keeps its id when it is replaced; chunk and
 * document ids are never reused after removal (AUTOINCREMENT), so an id held
 * by an index can go stale but never points at a different chunk.
 */
#ifndef NR_STORE_H
#define NR_STORE_H

#include <stddef.h>
#include <stdint.h>

/* Hard limits; input beyond them is refused with NR_ELIMIT. */
#define NR_STORE_MAX_NAME     64          /* collection name bytes: [A-Za-z0-9][A-Za-z0-9_.-]* */
#define NR_STORE_MAX_STRING   4096        /* source, title, heading bytes */
#define NR_STORE_MAX_SHORT    255         /* media_type, model_id bytes */
#define NR_STORE_MAX_METADATA (64 << 10)  /* metadata JSON bytes */
#define NR_STORE_MAX_TEXT     (256 << 20) /* document text bytes */
#define NR_STORE_MAX_CHUNKS   (1 << 20)   /* chunks per document */
#define NR_STORE_MAX_DIM      16384       /* vector dimension */
#define NR_STORE_MAX_K        1000        /* BM25 hits per query */
#define NR_STORE_MAX_QUERY    4096        /* BM25 query bytes */
#define NR_STORE_MAX_TERMS    64          /* BM25 query terms used (later ones are ignored) */
#define NR_STORE_MAX_LIST     10000       /* documents per nr_store_doc_list call */

/* The schema version this build writes; a file with a newer one is refused. */
#define NR_STORE_SCHEMA_VERSION 1

struct nr_store;

/*
 * Open (creating if missing) the store at `path` and bring its schema up to
 * NR_STORE_SCHEMA_VERSION. Errors: NR_EIO (cannot open or write),
 * NR_EFORMAT (not a SQLite file, or a SQLite file that is not a nanorag
 * store), NR_EUNSUPPORTED (written by a newer nanorag), NR_ENOMEM.
 * On success *out is a handle to close with nr_store_close.
 */
int nr_store_open(const char *path, struct nr_store **out);
void nr_store_close(struct nr_store *s); /* NULL is fine */

/* A document to store. Strings are UTF-8 and NUL-terminated; NULL where noted. */
struct nr_doc_in {
    const char *collection;    /* name; created on first use */
    const char *source;        /* path or upload name; unique within a collection */
    const char *title;         /* NULL: none */
    const char *media_type;    /* "text/markdown", ...; NULL: unknown */
    const char *metadata_json; /* a JSON object with unique keys, or NULL; stored as given */
    const char *text;          /* extracted text, text_len bytes, valid UTF-8 without NUL */
    size_t text_len;           /* bytes; text may be NULL when 0 */
    const char *content_hash;  /* 64 lowercase hex digits: SHA-256 of the raw file bytes
                                  (nr_sha256_hex); NULL: the store hashes `text` */
};

/* A chunk of the document: its text is text[start, end). */
struct nr_chunk_in {
    int64_t start, end;  /* byte offsets, 0 <= start <= end <= text_len, on UTF-8 char boundaries */
    int page;            /* 1-based page, 0 if unknown */
    int n_tokens;        /* tokens in the chunk (>= 0), as the chunker counted them */
    const char *heading; /* enclosing section heading; NULL or "" if none (stored as NULL) */
};

enum nr_store_put_status {
    NR_STORE_ADDED = 1,     /* new (collection, source) */
    NR_STORE_UNCHANGED = 2, /* same hash and model as stored: nothing written */
    NR_STORE_REPLACED = 3,  /* same (collection, source), new content: old chunks gone */
};

/*
 * Store one document with all its chunks and their vectors, in ONE
 * transaction: either everything is written or nothing is.
 *
 * vectors: n_chunks x dim floats, row i for chunk i, all finite; required
 * when n_chunks > 0 (a document is stored only once it is embedded, so it is
 * never present without its vectors). model_id names the embedding model.
 * n_chunks may be 0 (an empty document): vectors, dim and model_id are then
 * ignored.
 *
 * If (collection, source) exists with the same content hash and the same
 * model, nothing is written and *status is NR_STORE_UNCHANGED (a changed
 * title or metadata alone does not count as a change). Otherwise the
 * document is added or replaced: a replaced document keeps its id, its old
 * chunks, vectors and FTS entries are removed in the same transaction, and
 * its new chunks get new ids (an in-memory index should drop the document's
 * old entries by document id and add the new ones).
 *
 * Inputs are checked before anything is written (NR_EINVAL names the field,
 * NR_ELIMIT the limit). Other errors: NR_ELIMIT when the disk or the size
 * limit is full, NR_EIO, NR_ENOMEM. *doc_id and *status (either may be NULL)
 * are set only on success.
 */
int nr_store_put(struct nr_store *s, const struct nr_doc_in *d, const struct nr_chunk_in *chunks,
                 int n_chunks, const float *vectors, int dim, const char *model_id, int64_t *doc_id,
                 int *status);

/*
 * Cheap pre-check before loading and embedding a file: 1 if (collection,
 * source) is stored with this content hash and model (exactly when
 * nr_store_put would answer NR_STORE_UNCHANGED), 0 if not, < 0 on error.
 * content_hash NULL: any hash; model_id NULL: any model. *doc_id (may be
 * NULL) is set when the answer is 1.
 */
int nr_store_has(struct nr_store *s, const char *collection, const char *source,
                 const char *content_hash, const char *model_id, int64_t *doc_id);

/* Remove a document and everything of it. NR_ENOTFOUND if there is none. */
int nr_store_remove(struct nr_store *s, int64_t doc_id);

/* A stored document. All strings are owned by the struct. */
struct nr_store_doc {
    int64_t id;
    int64_t collection_id;
    char *collection; /* name */
    char *source;
    char *title;           /* NULL if none */
    char *media_type;      /* NULL if unknown */
    char *metadata_json;   /* the JSON object as it was put, or NULL */
    char content_hash[65]; /* hex SHA-256 */
    int n_chunks;
    int64_t text_len;   /* bytes */
    int64_t created_at; /* unix ms, first put */
    int64_t updated_at; /* unix ms, last replace */
    int64_t *chunk_ids; /* n_chunks ids in order (nr_store_doc_get only; else NULL) */
};

/* One document with its chunk ids, read in one snapshot. NR_ENOTFOUND if
 * none; NR_EFORMAT if its chunks do not match its chunk count (damage). */
int nr_store_doc_get(struct nr_store *s, int64_t doc_id, struct nr_store_doc **out);
void nr_store_doc_free(struct nr_store_doc *d);

/*
 * Documents by ascending id, for paging: those with id > after_id, at most
 * `limit` (1..NR_STORE_MAX_LIST), in collection `collection` (NULL: all).
 * *docs is an array of *n documents (chunk_ids NULL), freed with
 * nr_store_doc_list_free; an unknown collection gives 0 documents.
 */
int nr_store_doc_list(struct nr_store *s, const char *collection, int64_t after_id, int limit,
                      struct nr_store_doc **docs, int *n);
void nr_store_doc_list_free(struct nr_store_doc *docs, int n);

/* The document's whole text: *text (NUL-terminated, *len bytes), freed with nr_free. */
int nr_store_doc_text(struct nr_store *s, int64_t doc_id, char **text, size_t *len);

/* A stored chunk with what a citation needs. Strings are owned by the struct. */
struct nr_store_chunk {
    int64_t id;
    int64_t doc_id;
    int64_t collection_id;
    int ordinal;        /* position in the document, from 0 */
    int64_t start, end; /* byte offsets into the document text */
    int page;           /* 1-based, 0 if unknown */
    int n_tokens;
    char *heading; /* NULL if none */
    char *text;    /* end - start bytes + NUL */
    char *source;  /* of the document */
    char *title;   /* of the document; NULL if none */
};

/* NR_ENOTFOUND if the chunk does not exist (any more). */
int nr_store_chunk_get(struct nr_store *s, int64_t chunk_id, struct nr_store_chunk **out);
void nr_store_chunk_free(struct nr_store_chunk *c);

struct nr_store_collection {
    int64_t id;
    char name[NR_STORE_MAX_NAME + 1];
    int64_t created_at; /* unix ms */
    int64_t n_docs;
    int64_t n_chunks;
};

/* All collections by name; *cols (array of *n) freed with nr_free. */
int nr_store_collections(struct nr_store *s, struct nr_store_collection **cols, int *n);

/* Optional restrictions on a search; zero-initialise and set what you need. */
struct nr_store_filter {
    const char *collection; /* collection name; NULL: any */
    int64_t doc_id;         /* 0: any */
    const char *meta_key;   /* top-level metadata key; NULL: no metadata filter */
    const char *meta_value; /* matches a string value equal to it, or a number, boolean or
                               null whose JSON text equals it ("3", "true") */
};

struct nr_store_hit {
    int64_t chunk_id;
    int64_t doc_id;
    double score; /* -bm25(): > 0, higher is better */
};

/*
 * BM25 full-text search: the best (at most k, 1..NR_STORE_MAX_K) chunks for
 * `query`, best first, into hits[0..*n_hits). The query is user text, never
 * FTS5 syntax: words are runs of letters, digits and marks (everything else,
 * punctuation, symbols, spaces, separates them, as in the FTS tokenizer), each
 * word is quoted, and the words are ORed (a chunk matches if it has any word;
 * chunks with more and rarer words rank higher). Operators (AND, OR, NOT,
 * NEAR, *, ^, column:) are plain words. A query with no words gives 0 hits,
 * not an error. NR_EINVAL if the query is not valid UTF-8. f may be NULL.
 */
int nr_store_bm25(struct nr_store *s, const char *query, int k, const struct nr_store_filter *f,
                  struct nr_store_hit *hits, int *n_hits);

/*
 * Call cb for every vector of model `model_id`, in chunk id order, all from
 * one snapshot (to load the in-memory index at start-up). `v` (dim floats,
 * host order) is valid only during the call. A non-zero return from cb stops
 * the walk and is returned. cb must not use this handle.
 */
typedef int (*nr_store_vector_fn)(void *ctx, int64_t chunk_id, int64_t doc_id,
                                  int64_t collection_id, const float *v, int dim);
int nr_store_foreach_vector(struct nr_store *s, const char *model_id, nr_store_vector_fn cb,
                            void *ctx);
/* The same for one document's vectors only (to refresh the index after a
 * put: O(the document's chunks), not O(the store)). None is not an error. */
int nr_store_foreach_doc_vector(struct nr_store *s, const char *model_id, int64_t doc_id,
                                nr_store_vector_fn cb, void *ctx);

/*
 * Full consistency check (reads everything; for tests, `status`-style
 * diagnostics and after a crash): SQLite's integrity and foreign-key checks,
 * the FTS index against the chunk table, and the store's own invariants
 * (chunk counts, offsets, chunk text equal to its slice of the document,
 * one vector per chunk). NR_OK, or NR_EFORMAT with the first problem found.
 */
int nr_store_check(struct nr_store *s);

/*
 * Cap the database size at about max_bytes (rounded down to whole pages;
 * 0: no cap beyond the disk). A put that would grow the file beyond it
 * fails with NR_ELIMIT and writes nothing, like a full disk. Applies to this
 * handle only.
 */
int nr_store_set_size_limit(struct nr_store *s, int64_t max_bytes);

#endif

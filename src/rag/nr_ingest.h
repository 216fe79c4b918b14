/*
 * nr_ingest: the ingest pipeline — files in, searchable chunks out.
 *
 *     paths ─▶ walk (recursive, include/exclude globs, sorted) ─▶ per file:
 *     read + SHA-256 ─▶ unchanged? skip ─▶ load (nr_load) ─▶ chunk (nr_chunk)
 *     ─▶ embed (nr_embedder, batched) ─▶ store (nr_store_put: one transaction)
 *
 * One bad file never stops the batch: it is reported through the per-file
 * callback with its error and the walk goes on. A document becomes visible
 * only once it is fully embedded and committed. Progress (files, chunks,
 * chunks/s, ETA) is reported through a callback after every file.
 *
 * Ownership: the caller owns the store and the embedder and keeps them open
 * for the call; the pipeline allocates per file and frees before the next.
 */
#ifndef NR_INGEST_H
#define NR_INGEST_H

#include "nr_chunk.h"
#include "nr_load.h"

#include <stddef.h>
#include <stdint.h>

struct nr_store;
struct nr_embedder;

#define NR_INGEST_MAX_FILES (1 << 20) /* files one call may walk */
#define NR_INGEST_MAX_DEPTH 64        /* directory nesting */

struct nr_ingest_opts {
    const char *collection;     /* default "default" */
    const char *const *include; /* fnmatch globs on the file name; NULL/0: all files */
    int n_include;
    const char *const *exclude; /* fnmatch globs on the name or the relative path */
    int n_exclude;
    struct nr_chunk_opts chunk;
    struct nr_load_opts load;
    const char *title;         /* nr_ingest_mem: title to store instead of the loader's; NULL */
    const char *metadata_json; /* nr_ingest_mem: metadata JSON object to store; NULL: none */
};

enum nr_ingest_status {
    NR_INGEST_ADDED = 1,
    NR_INGEST_UNCHANGED = 2,
    NR_INGEST_REPLACED = 3,
    NR_INGEST_FAILED = 4,
};

struct nr_ingest_file {
    const char *source; /* the stored source name (absolute path) */
    int status;         /* enum nr_ingest_status */
    int n_chunks;
    int64_t doc_id;    /* 0 when failed */
    const char *error; /* message when failed, else NULL */
};

struct nr_ingest_progress {
    int files_done, files_total;
    int64_t chunks; /* chunks embedded so far */
    double elapsed_s;
    double chunks_per_s;
    double eta_s; /* < 0 when unknown */
};

struct nr_ingest_summary {
    int added, unchanged, replaced, failed;
    int64_t chunks;
    double seconds;       /* wall time */
    double embed_seconds; /* of which embedding */
};

typedef void (*nr_ingest_file_fn)(void *ctx, const struct nr_ingest_file *f);
typedef void (*nr_ingest_progress_fn)(void *ctx, const struct nr_ingest_progress *p);

void nr_ingest_opts_default(struct nr_ingest_opts *o);

/*
 * Ingest every regular file named by paths[] (directories are walked
 * recursively; symbolic links to directories are not followed). Callbacks
 * may be NULL. Returns NR_OK when the walk completed (individual files may
 * have failed: see the summary), or an error that stopped it (a path that
 * does not exist, too many files, the store failing).
 */
int nr_ingest_paths(struct nr_store *s, struct nr_embedder *e, const char *const *paths,
                    int n_paths, const struct nr_ingest_opts *o, nr_ingest_file_fn on_file,
                    nr_ingest_progress_fn on_progress, void *ctx, struct nr_ingest_summary *sum);

/*
 * Ingest one document from memory (an upload): `name` is its source name,
 * the bytes are loaded as media type `type` (NR_LOAD_AUTO: detected).
 * *f is filled as for the per-file callback; f->error points into
 * thread-local storage (nr_err_msg) and f->source to name.
 */
int nr_ingest_mem(struct nr_store *s, struct nr_embedder *e, const char *name, const void *data,
                  size_t n, enum nr_load_type type, const struct nr_ingest_opts *o,
                  struct nr_ingest_file *f, double *embed_seconds);

#endif

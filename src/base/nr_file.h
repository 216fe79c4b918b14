/*
 * nr_file: whole-file access. Read-only memory maps for model files (never
 * written, never copied), and a bounded read for small text files.
 */
#ifndef NR_FILE_H
#define NR_FILE_H

#include <stddef.h>

struct nr_map {
    const unsigned char *data; /* read-only mapping, or NULL for an empty file */
    size_t size;               /* bytes */
};

/* Map `path` read-only. On success fills *m; release with nr_file_unmap. */
int nr_file_map(const char *path, struct nr_map *m);
void nr_file_unmap(struct nr_map *m);
/* Tell the kernel the mapped pages may be dropped (after an upload, say). */
void nr_file_map_release(struct nr_map *m);
/* The same for the whole pages inside [p, p + n) of a read-only mapping
 * (after a tensor was repacked into its own buffer). Harmless if p is not
 * in a mapping: the call is advisory and failures are ignored. */
void nr_file_release_range(const void *p, size_t n);

/*
 * Read the whole of `path` into a NUL-terminated buffer (caller frees with
 * nr_free). Files larger than `max_bytes` give NR_ELIMIT.
 */
int nr_file_read(const char *path, size_t max_bytes, char **out, size_t *len);

/* Join dir and name into buf (NR_ELIMIT if it does not fit). */
int nr_path_join(char *buf, size_t cap, const char *dir, const char *name);

/* 1 if path exists and is a directory / a regular file, else 0. */
int nr_path_is_dir(const char *path);
int nr_path_is_file(const char *path);

/*
 * Find a default model: rel (a directory when want_dir, else a file) is
 * looked for, first match wins, as
 *   $env_var (taken as the path itself, unchecked: the user said so),
 *   $NANORAG_MODELS/rel, ./models/rel, <this binary's dir>/../models/rel
 * (the last makes build/nanorag work from anywhere in a checkout).
 * NR_OK with the path in buf, NR_ELIMIT if $env_var does not fit, or
 * NR_ENOTFOUND (no message set: the caller says how to get the model).
 */
int nr_path_find_model(const char *env_var, const char *rel, int want_dir, char *buf, size_t cap);

#endif

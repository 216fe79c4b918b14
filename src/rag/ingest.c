/*
 * ingest.c — the pipeline of nr_ingest.h.
 *
 * The walk collects the file list first (sorted, so runs are repeatable and
 * the progress has a total), then processes files one at a time. Per file,
 * memory is bounded by the loader's caps (input and extracted text) and the
 * chunk count; the embedder batches a document's chunks by its token budget.
 * Unchanged files (same collection, source, content hash and embedding
 * model) are detected from the raw bytes' hash before any loading or
 * embedding, so re-ingesting a directory costs one read and hash per file.
 */
#define _GNU_SOURCE
#include "nr_ingest.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_file.h"
#include "nr_mem.h"
#include "nr_sha256.h"
#include "nr_store.h"

#include <dirent.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

void nr_ingest_opts_default(struct nr_ingest_opts *o)
{
    memset(o, 0, sizeof *o);
    o->collection = "default";
    nr_chunk_opts_default(&o->chunk);
    nr_load_opts_default(&o->load);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ walk */

struct file_list {
    char **paths;
    int n, cap;
};

static int list_add(struct file_list *l, const char *path)
{
    if (l->n >= NR_INGEST_MAX_FILES)
        return nr_err_set(NR_ELIMIT, "more than %d files to ingest", NR_INGEST_MAX_FILES);
    if (l->n == l->cap) {
        int ncap = l->cap ? l->cap * 2 : 256;
        char **np = nr_realloc(l->paths, (size_t)ncap * sizeof *np);
        if (!np)
            return nr_err_set(NR_ENOMEM, "out of memory listing files");
        l->paths = np;
        l->cap = ncap;
    }
    l->paths[l->n] = nr_strdup(path);
    if (!l->paths[l->n])
        return nr_err_set(NR_ENOMEM, "out of memory listing files");
    l->n++;
    return NR_OK;
}

static void list_free(struct file_list *l)
{
    for (int i = 0; i < l->n; i++)
        nr_free(l->paths[i]);
    nr_free(l->paths);
    memset(l, 0, sizeof *l);
}

static int matches_any(const char *const *globs, int n, const char *name, const char *rel)
{
    for (int i = 0; i < n; i++)
        if (fnmatch(globs[i], name, 0) == 0 || fnmatch(globs[i], rel, FNM_PATHNAME) == 0)
            return 1;
    return 0;
}

static int wanted(const struct nr_ingest_opts *o, const char *name, const char *rel)
{
    if (o->n_exclude && matches_any(o->exclude, o->n_exclude, name, rel))
        return 0;
    if (o->n_include && !matches_any(o->include, o->n_include, name, rel))
        return 0;
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walk dir (its path relative to the walk's root is rel). */
static int walk_dir(const char *dir, const char *rel, int depth, const struct nr_ingest_opts *o,
                    struct file_list *out)
{
    DIR *d;
    struct dirent *e;
    struct file_list names = {0};
    int rc = NR_OK;

    if (depth > NR_INGEST_MAX_DEPTH)
        return nr_err_set(NR_ELIMIT, "directories nested deeper than %d", NR_INGEST_MAX_DEPTH);
    d = opendir(dir);
    if (!d)
        return NR_OK; /* unreadable directory: nothing to ingest there */
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') /* ., .., and hidden files (.git ...) */
            continue;
        if ((rc = list_add(&names, e->d_name)))
            break;
    }
    closedir(d);
    if (rc == NR_OK && names.n > 1)
        qsort(names.paths, (size_t)names.n, sizeof names.paths[0], cmp_str);
    for (int i = 0; rc == NR_OK && i < names.n; i++) {
        char path[PATH_MAX], rpath[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, names.paths[i]) >= (int)sizeof path ||
            snprintf(rpath, sizeof rpath, "%s%s%s", rel, rel[0] ? "/" : "", names.paths[i]) >=
                (int)sizeof rpath)
            continue; /* path too long: skipped */
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (!(o->n_exclude && matches_any(o->exclude, o->n_exclude, names.paths[i], rpath)))
                rc = walk_dir(path, rpath, depth + 1, o, out);
        } else if (S_ISREG(st.st_mode) ||
                   (S_ISLNK(st.st_mode) && stat(path, &st) == 0 && S_ISREG(st.st_mode))) {
            if (wanted(o, names.paths[i], rpath))
                rc = list_add(out, path);
        }
    }
    list_free(&names);
    return rc;
}

static int collect(const char *const *paths, int n, const struct nr_ingest_opts *o,
                   struct file_list *out)
{
    for (int i = 0; i < n; i++) {
        struct stat st;
        int rc;
        if (stat(paths[i], &st) != 0)
            return nr_err_set(NR_ENOTFOUND, "%s: no such file or directory", paths[i]);
        if (S_ISDIR(st.st_mode))
            rc = walk_dir(paths[i], "", 0, o, out);
        else if (S_ISREG(st.st_mode))
            rc = list_add(out, paths[i]); /* named explicitly: no glob filter */
        else
            rc = nr_err_set(NR_EINVAL, "%s: not a regular file or directory", paths[i]);
        if (rc)
            return rc;
    }
    return NR_OK;
}

/* ------------------------------------------------------------ one document */

static int ingest_doc(struct nr_store *s, struct nr_embedder *e, const char *source,
                      const void *data, size_t n, enum nr_load_type type,
                      const struct nr_ingest_opts *o, struct nr_ingest_file *f,
                      double *embed_seconds)
{
    char hash[NR_SHA256_HEX];
    const char *model_id = nr_embedder_model_id(e);
    struct nr_load_doc *doc = NULL;
    struct nr_chunk_list *cl = NULL;
    struct nr_chunk_in *cin = NULL;
    const char **texts = NULL;
    size_t *lens = NULL;
    float *vecs = NULL;
    int dim = nr_embedder_dim(e), rc, status = 0;
    int64_t id = 0;

    f->source = source;
    f->status = NR_INGEST_FAILED;
    f->n_chunks = 0;
    f->doc_id = 0;
    f->error = NULL;
    nr_sha256_hex(data, n, hash);
    rc = nr_store_has(s, o->collection, source, hash, model_id, &id);
    if (rc < 0)
        goto fail;
    if (rc == 1) {
        f->status = NR_INGEST_UNCHANGED;
        f->doc_id = id;
        return NR_OK;
    }
    if ((rc = nr_load_mem(data, n, type, source, &o->load, &doc)))
        goto fail;
    if ((rc = nr_chunk_split(nr_embedder_tokenizer(e), doc, &o->chunk, &cl)))
        goto fail;
    if (cl->n > 0) {
        double t0 = now_s();
        cin = nr_calloc((size_t)cl->n, sizeof *cin);
        texts = nr_calloc((size_t)cl->n, sizeof *texts);
        lens = nr_calloc((size_t)cl->n, sizeof *lens);
        vecs = nr_malloc((size_t)cl->n * (size_t)dim * sizeof *vecs);
        if (!cin || !texts || !lens || !vecs) {
            rc = nr_err_set(NR_ENOMEM, "out of memory for %d chunks", cl->n);
            goto fail;
        }
        for (int i = 0; i < cl->n; i++) {
            const struct nr_chunk *c = &cl->chunks[i];
            cin[i].start = (int64_t)c->start;
            cin[i].end = (int64_t)c->end;
            cin[i].page = c->page;
            cin[i].n_tokens = c->n_tokens;
            cin[i].heading = c->heading && c->heading[0] ? c->heading : NULL;
            texts[i] = doc->text + c->start;
            lens[i] = c->end - c->start;
        }
        if ((rc = nr_embedder_embed(e, texts, lens, cl->n, vecs)))
            goto fail;
        if (embed_seconds)
            *embed_seconds += now_s() - t0;
    }
    {
        struct nr_doc_in d = {.collection = o->collection,
                              .source = source,
                              .title = o->title ? o->title : doc->title,
                              .media_type = nr_load_type_media(doc->type),
                              .metadata_json = o->metadata_json,
                              .text = doc->text,
                              .text_len = doc->len,
                              .content_hash = hash};
        rc = nr_store_put(s, &d, cin, cl->n, vecs, dim, model_id, &id, &status);
        if (rc)
            goto fail;
    }
    f->status = status == NR_STORE_REPLACED    ? NR_INGEST_REPLACED
                : status == NR_STORE_UNCHANGED ? NR_INGEST_UNCHANGED
                                               : NR_INGEST_ADDED;
    f->n_chunks = cl->n;
    f->doc_id = id;
fail:
    if (rc)
        f->error = nr_err_msg();
    nr_free(cin);
    nr_free(texts);
    nr_free(lens);
    nr_free(vecs);
    nr_chunk_list_free(cl);
    nr_load_doc_free(doc);
    return rc;
}

int nr_ingest_mem(struct nr_store *s, struct nr_embedder *e, const char *name, const void *data,
                  size_t n, enum nr_load_type type, const struct nr_ingest_opts *o,
                  struct nr_ingest_file *f, double *embed_seconds)
{
    struct nr_ingest_opts def;
    if (!o) {
        nr_ingest_opts_default(&def);
        o = &def;
    }
    return ingest_doc(s, e, name, data, n, type, o, f, embed_seconds);
}

/* ------------------------------------------------------------ the walk */

int nr_ingest_paths(struct nr_store *s, struct nr_embedder *e, const char *const *paths,
                    int n_paths, const struct nr_ingest_opts *o, nr_ingest_file_fn on_file,
                    nr_ingest_progress_fn on_progress, void *ctx, struct nr_ingest_summary *sum)
{
    struct nr_ingest_opts def;
    struct file_list files = {0};
    struct nr_ingest_summary z = {0};
    double t0 = now_s();
    int rc;

    if (!o) {
        nr_ingest_opts_default(&def);
        o = &def;
    }
    if (!sum)
        sum = &z;
    memset(sum, 0, sizeof *sum);
    if ((rc = collect(paths, n_paths, o, &files)))
        goto done;
    for (int i = 0; i < files.n; i++) {
        struct nr_ingest_file f = {0};
        char abs[PATH_MAX];
        const char *source = realpath(files.paths[i], abs) ? abs : files.paths[i];
        struct nr_map m = {0};
        int frc;

        frc = nr_file_map(files.paths[i], &m);
        if (frc == NR_OK && m.size > o->load.max_file_bytes)
            frc = nr_err_set(NR_ELIMIT, "file of %zu bytes is larger than the %zu-byte limit",
                             m.size, o->load.max_file_bytes);
        if (frc == NR_OK) {
            frc = ingest_doc(s, e, source, m.data ? (const void *)m.data : "", m.size, NR_LOAD_AUTO,
                             o, &f, &sum->embed_seconds);
        } else {
            f.source = source;
            f.status = NR_INGEST_FAILED;
            f.error = nr_err_msg();
        }
        nr_file_unmap(&m);
        switch (f.status) {
        case NR_INGEST_ADDED:
            sum->added++;
            break;
        case NR_INGEST_UNCHANGED:
            sum->unchanged++;
            break;
        case NR_INGEST_REPLACED:
            sum->replaced++;
            break;
        default:
            sum->failed++;
        }
        sum->chunks += f.status == NR_INGEST_UNCHANGED ? 0 : f.n_chunks;
        if (on_file)
            on_file(ctx, &f);
        if (on_progress) {
            struct nr_ingest_progress p;
            p.files_done = i + 1;
            p.files_total = files.n;
            p.chunks = sum->chunks;
            p.elapsed_s = now_s() - t0;
            p.chunks_per_s = p.elapsed_s > 0 ? (double)sum->chunks / p.elapsed_s : 0;
            p.eta_s = i + 1 < files.n ? p.elapsed_s / (i + 1) * (files.n - i - 1) : 0;
            on_progress(ctx, &p);
        }
        (void)frc; /* a failed file is reported, never fatal */
    }
done:
    sum->seconds = now_s() - t0;
    list_free(&files);
    return rc;
}

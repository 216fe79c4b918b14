/*
 * Durability under kill -9 (RELIABILITY C8).
 *
 * A child process runs a deterministic stream of operations on a store:
 * op i adds a new document, replaces an earlier one, or removes one (the
 * kind, the target and the content all derive from i). After each call
 * returns NR_OK, the child writes i to a pipe: that is the acknowledgement.
 * The parent kills the child with SIGKILL after a short random delay
 * (often mid-commit: each put fsyncs), reads the acknowledgements, and
 * replays the acknowledged ops on a model of what the store must hold.
 * Then it reopens the store (timing the reopen, which recovers the WAL)
 * and checks:
 *   - every source holds exactly the version the model says, or, for the
 *     one op that was in flight when the child died, the state after that
 *     op (it may have committed without being acknowledged): row, text,
 *     every chunk (offsets, page, tokens, heading, text), every vector byte
 *     for byte, and every chunk findable through the FTS index;
 *   - no document is half present: chunk count == n_chunks, one vector and
 *     one FTS entry per chunk, no document outside the model;
 *   - PRAGMA integrity_check says ok.
 * The next child resumes at the first unacknowledged op. Sources touched
 * in a cycle are compared every cycle; all of them every 25 cycles and at
 * the end, with nr_store_check (which re-indexes every chunk) and the
 * vectors read back through nr_store_foreach_vector.
 *
 * NR_KILL_POINTS overrides the number of kills (default 250).
 */
#include "nr_test.h"

#include "nr_err.h"
#include "nr_str.h"
#include "nr_mem.h"
#include "nr_sha256.h"
#include "nr_store.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DIM       384 /* MiniLM-sized: a put writes several pages of vectors */
#define MAX_CHUNK 8
#define MAX_OPS   100000
#define MODEL     "synthetic-384"

static char tmp_dir[256], db_path[300];

/* ---------------------------------------------------------------- deterministic content */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

enum { OP_ADD, OP_REPLACE, OP_REMOVE };

static int op_kind(int i)
{
    int r = (int)(mix((uint64_t)i * 3 + 1) % 100);
    if (i < 4 || r < 65)
        return OP_ADD;
    return r < 88 ? OP_REPLACE : OP_REMOVE;
}

/* The source an op works on: its own for an add, an earlier op's otherwise. */
static int op_source(int i)
{
    return op_kind(i) == OP_ADD ? i : (int)(mix((uint64_t)i * 3 + 2) % (uint64_t)i);
}

static const char *words[] = {
    "river",        "stone",
    "lantern",      "harbor",
    "copper",       "meadow",
    "signal",       "orchard",
    "glacier",      "ember",
    "compass",      "thistle",
    "quarry",       "caf\xc3\xa9",
    "na\xc3\xafve", "falcon",
    "timber",       "violet",
    "anchor",       "pepper",
    "saddle",       "\xc3\xa9t\xc3\xa9",
    "marble",       "willow",
};

/* Version i of a document: its text, chunks and vectors. */
struct version {
    char text[4096];
    size_t len;
    struct nr_chunk_in c[MAX_CHUNK];
    char heading[MAX_CHUNK][32];
    int n;
    float v[MAX_CHUNK * DIM];
    char hash[NR_SHA256_HEX];
    char title[32], meta[64], tag[16];
};

static void make_version(int i, struct version *ver)
{
    uint64_t r = mix((uint64_t)i * 7 + 5);
    size_t o = 0;

    memset(ver, 0, sizeof *ver);
    ver->n = 1 + (int)(r % MAX_CHUNK);
    snprintf(ver->tag, sizeof ver->tag, "v%d", i);
    for (int j = 0; j < ver->n; j++) {
        int n_words = 3 + (int)(mix(r + (uint64_t)j) % 40);
        ver->c[j].start = (int64_t)o;
        o += (size_t)snprintf(ver->text + o, sizeof ver->text - o, "%s c%d", ver->tag, j);
        for (int w = 0; w < n_words; w++)
            o += (size_t)snprintf(ver->text + o, sizeof ver->text - o, " %s",
                                  words[mix(r * 31 + (uint64_t)(j * 64 + w)) % 24]);
        o += (size_t)snprintf(ver->text + o, sizeof ver->text - o, ". ");
        ver->c[j].end = (int64_t)o;
        ver->c[j].page = j % 3 ? j : 0;
        ver->c[j].n_tokens = n_words + 2;
        if (j % 2) {
            snprintf(ver->heading[j], sizeof ver->heading[j], "Part %d of v%d", j, i);
            ver->c[j].heading = ver->heading[j];
        }
    }
    ver->len = o;
    for (int k = 0; k < ver->n * DIM; k++)
        ver->v[k] =
            (float)((int64_t)(mix((uint64_t)i * 1000003 + (uint64_t)k) % 2000001) - 1000000) / 1e6f;
    nr_sha256_hex(ver->text, ver->len, ver->hash);
    snprintf(ver->title, sizeof ver->title, "Document version %d", i);
    snprintf(ver->meta, sizeof ver->meta, "{\"op\": %d, \"chunks\": %d}", i, ver->n);
}

static void source_names(int k, char coll[16], char src[32])
{
    snprintf(coll, 16, "col%d", k % 3);
    snprintf(src, 32, "docs/source-%d.txt", k);
}

/* ---------------------------------------------------------------- the child */

static int run_op(struct nr_store *s, int i)
{
    struct version ver;
    struct nr_doc_in d;
    char coll[16], src[32];
    int k = op_source(i);
    int64_t id;
    int rc;

    source_names(k, coll, src);
    if (op_kind(i) == OP_REMOVE) {
        rc = nr_store_has(s, coll, src, NULL, NULL, &id);
        if (rc < 0)
            return rc;
        return rc == 1 ? nr_store_remove(s, id) : NR_OK;
    }
    make_version(i, &ver);
    memset(&d, 0, sizeof d);
    d.collection = coll;
    d.source = src;
    d.title = ver.title;
    d.media_type = "text/plain";
    d.metadata_json = ver.meta;
    d.text = ver.text;
    d.text_len = ver.len;
    d.content_hash = ver.hash;
    return nr_store_put(s, &d, ver.c, ver.n, ver.v, DIM, MODEL, NULL, NULL);
}

static void child_main(int start, int fd)
{
    struct nr_store *s = NULL;
    int rc = nr_store_open(db_path, &s);
    if (rc) {
        fprintf(stderr, "child: open: %s\n", nr_err_msg());
        _exit(3);
    }
    for (int i = start; i < MAX_OPS; i++) {
        uint32_t ack = (uint32_t)i;
        if ((rc = run_op(s, i))) {
            fprintf(stderr, "child: op %d: %s\n", i, nr_err_msg());
            _exit(3);
        }
        if (write(fd, &ack, sizeof ack) != (ssize_t)sizeof ack)
            _exit(4);
    }
    _exit(5);
}

/* ---------------------------------------------------------------- the model and the checks */

static int model[MAX_OPS];   /* source -> version (op index) it must hold, -1: absent */
static int touched[MAX_OPS]; /* source -> cycle it was last touched */

static void apply(int i)
{
    int k = op_source(i);
    model[k] = op_kind(i) == OP_REMOVE ? -1 : i;
}

static sqlite3 *raw;

static long long raw_int(const char *sql, int64_t arg)
{
    sqlite3_stmt *st = NULL;
    long long v = -999;
    if (sqlite3_prepare_v2(raw, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, arg);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static int vector_matches(int64_t chunk_id, const float *want)
{
    sqlite3_stmt *st = NULL;
    unsigned char le[DIM * 4];
    int ok = 0;
    for (int k = 0; k < DIM; k++) {
        uint32_t u;
        memcpy(&u, &want[k], 4);
        for (int b = 0; b < 4; b++)
            le[4 * k + b] = (unsigned char)(u >> (8 * b));
    }
    if (sqlite3_prepare_v2(raw, "SELECT model_id, dim, blob FROM vectors WHERE chunk_id = ?1", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, chunk_id);
        if (sqlite3_step(st) == SQLITE_ROW)
            ok = strcmp((const char *)sqlite3_column_text(st, 0), MODEL) == 0 &&
                 sqlite3_column_int(st, 1) == DIM && sqlite3_column_bytes(st, 2) == DIM * 4 &&
                 memcmp(sqlite3_column_blob(st, 2), le, sizeof le) == 0;
    }
    sqlite3_finalize(st);
    return ok;
}

/* Does source k hold exactly version `want` (-1: absent)? 0 if so, else a message. */
static const char *source_is(struct nr_store *s, int k, int want, int64_t *doc_id_out)
{
    static char msg[256];
    struct nr_store_doc *d = NULL;
    struct version ver;
    char coll[16], src[32];
    char *text = NULL;
    size_t len = 0;
    int64_t id = 0;
    int rc;

    source_names(k, coll, src);
    rc = nr_store_has(s, coll, src, NULL, NULL, &id);
    if (rc < 0)
        return nr_err_msg();
    if (want < 0)
        return rc == 0 ? NULL : "present, should be absent";
    if (rc == 0)
        return "absent";
    make_version(want, &ver);
    if (nr_store_doc_get(s, id, &d) != NR_OK) {
        snprintf(msg, sizeof msg, "doc get: %s", nr_err_msg());
        return msg;
    }
    if (strcmp(d->content_hash, ver.hash) != 0) {
        nr_store_doc_free(d);
        return "another version";
    }
    *doc_id_out = id;
    if (strcmp(d->title, ver.title) || strcmp(d->metadata_json, ver.meta) ||
        strcmp(d->media_type, "text/plain") || d->n_chunks != ver.n ||
        d->text_len != (int64_t)ver.len) {
        nr_store_doc_free(d);
        return "row differs";
    }
    if (nr_store_doc_text(s, id, &text, &len) != NR_OK || len != ver.len ||
        memcmp(text, ver.text, len) != 0) {
        nr_free(text);
        nr_store_doc_free(d);
        return "text differs";
    }
    nr_free(text);
    for (int j = 0; j < ver.n; j++) {
        struct nr_store_chunk *c = NULL;
        const struct nr_chunk_in *w = &ver.c[j];
        int ok;
        if (nr_store_chunk_get(s, d->chunk_ids[j], &c) != NR_OK) {
            nr_store_doc_free(d);
            return "chunk missing";
        }
        ok = c->ordinal == j && c->start == w->start && c->end == w->end && c->page == w->page &&
             c->n_tokens == w->n_tokens &&
             (w->heading ? c->heading && strcmp(c->heading, w->heading) == 0 : !c->heading) &&
             strlen(c->text) == (size_t)(w->end - w->start) &&
             memcmp(c->text, ver.text + w->start, strlen(c->text)) == 0;
        nr_store_chunk_free(c);
        if (!ok) {
            nr_store_doc_free(d);
            return "chunk differs";
        }
        if (!vector_matches(d->chunk_ids[j], ver.v + j * DIM)) {
            nr_store_doc_free(d);
            return "vector differs";
        }
    }
    /* Every chunk is in the FTS index: the version tag is in each one. */
    {
        struct nr_store_hit hits[MAX_CHUNK + 1];
        struct nr_store_filter f;
        int n = 0;
        memset(&f, 0, sizeof f);
        f.doc_id = id;
        if (nr_store_bm25(s, ver.tag, MAX_CHUNK + 1, &f, hits, &n) != NR_OK || n != ver.n) {
            nr_store_doc_free(d);
            snprintf(msg, sizeof msg, "FTS finds %d of %d chunks", n, ver.n);
            return msg;
        }
    }
    nr_store_doc_free(d);
    return NULL;
}

/* Every vector read back through the API equals the one its version was
 * written with (the stored version is the model's, or the in-flight op's). */
struct vec_check {
    int in_flight;
    long n, bad;
};

static int check_vector_cb(void *ctx, int64_t chunk_id, int64_t doc_id, int64_t coll_id,
                           const float *v, int dim)
{
    struct vec_check *vc = ctx;
    static struct version ver;
    sqlite3_stmt *st = NULL;
    int ok = 0;

    vc->n++;
    if (sqlite3_prepare_v2(raw,
                           "SELECT c.ordinal, d.source, d.content_hash FROM chunks c"
                           " JOIN documents d ON d.id = c.document_id WHERE c.id = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, chunk_id);
        if (sqlite3_step(st) == SQLITE_ROW && dim == DIM) {
            int j = sqlite3_column_int(st, 0), k = -1;
            const char *hash = (const char *)sqlite3_column_text(st, 2);
            if (sscanf((const char *)sqlite3_column_text(st, 1), "docs/source-%d.txt", &k) == 1 &&
                k >= 0 && k < MAX_OPS) {
                int cand[2] = {model[k], vc->in_flight};
                for (int c = 0; c < 2 && !ok; c++) {
                    if (cand[c] < 0)
                        continue;
                    make_version(cand[c], &ver);
                    ok = strcmp(ver.hash, hash) == 0 && j < ver.n &&
                         memcmp(v, ver.v + j * DIM, DIM * sizeof(float)) == 0;
                }
            }
        }
    }
    sqlite3_finalize(st);
    vc->bad += !ok;
    return 0;
}

static void test_kill9_during_ingest(void)
{
    const char *env_kills = getenv("NR_KILL_POINTS");
    int n_kills = 250;
    int next_op = 0, acked_total = 0, cycles = 0, killed = 0;
    int inflight_applied = 0, inflight_lost = 0; /* unacknowledged op committed / not */
    double reopen_max = 0, reopen_sum = 0;
    struct timespec t_start, t_end;
    unsigned seed = (unsigned)time(NULL);

    if (env_kills && nr_parse_int(env_kills, 1, 1000000, "NR_KILL_POINTS", &n_kills))
        n_kills = 250;
    if (getenv("NR_KILL_SEED"))
        seed = (unsigned)strtoul(getenv("NR_KILL_SEED"), NULL, 10);
    srand(seed);
    printf("  %d kill points, seed %u (NR_KILL_SEED repeats a run)\n", n_kills, seed);
    for (int k = 0; k < MAX_OPS; k++)
        model[k] = -1;
    clock_gettime(CLOCK_MONOTONIC, &t_start);
    for (int cycle = 0; cycle < n_kills && nr_test_failed_checks == 0; cycle++) {
        int fds[2], status = 0, in_flight, full;
        long delay_us;
        pid_t pid;
        uint32_t ack;
        struct nr_store *s = NULL;
        struct timespec a, b;
        double reopen;

        if (pipe(fds) != 0) {
            NR_CHECK_MSG(0, "pipe: %s", strerror(errno));
            break;
        }
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            close(fds[0]);
            child_main(next_op, fds[1]);
        }
        close(fds[1]);
        NR_CHECK(pid > 0);
        if (pid <= 0)
            break;
        /* Mostly mid-ingest, sometimes during open and WAL recovery. */
        {
            int r = rand() % 100;
            delay_us = r < 10   ? rand() % 2000
                       : r < 80 ? 2000 + rand() % 25000
                                : 25000 + rand() % 40000;
        }
        {
            struct timespec ts = {0, delay_us * 1000};
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            NR_CHECK_MSG(0, "cycle %d: the child was not killed (status 0x%x)", cycle, status);
            close(fds[0]);
            break;
        }
        killed++;
        while (read(fds[0], &ack, sizeof ack) == (ssize_t)sizeof ack) {
            NR_CHECK_MSG((int)ack == next_op, "cycle %d: ack %u, expected %d", cycle, ack, next_op);
            apply((int)ack);
            touched[op_source((int)ack)] = cycle + 1;
            next_op = (int)ack + 1;
            acked_total++;
        }
        close(fds[0]);
        in_flight = next_op; /* may have committed without its acknowledgement */
        touched[op_source(in_flight)] = cycle + 1;

        clock_gettime(CLOCK_MONOTONIC, &a);
        if (nr_store_open(db_path, &s) != NR_OK) {
            NR_CHECK_MSG(0, "cycle %d: reopen: %s", cycle, nr_err_msg());
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        reopen = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
        reopen_sum += reopen;
        if (reopen > reopen_max)
            reopen_max = reopen;
        if (sqlite3_open_v2(db_path, &raw, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
            NR_CHECK_MSG(0, "cycle %d: raw open", cycle);
            break;
        }
        sqlite3_busy_timeout(raw, 5000);

        /* Nothing half present, anywhere. */
        NR_CHECK_MSG(raw_int("SELECT count(*) FROM documents d WHERE n_chunks !="
                             " (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)",
                             0) == 0,
                     "cycle %d: a document with missing chunks", cycle);
        NR_CHECK_MSG(raw_int("SELECT count(*) FROM chunks c WHERE NOT EXISTS"
                             " (SELECT 1 FROM vectors v WHERE v.chunk_id = c.id)",
                             0) == 0,
                     "cycle %d: a chunk without a vector", cycle);
        NR_CHECK_MSG(raw_int("SELECT (SELECT count(*) FROM chunks) - (SELECT count(*) FROM"
                             " chunks_fts_docsize) + (SELECT count(*) FROM chunks c WHERE NOT"
                             " EXISTS (SELECT 1 FROM chunks_fts_docsize f WHERE f.id = c.id))",
                             0) == 0,
                     "cycle %d: chunks and FTS entries differ", cycle);
        {
            sqlite3_stmt *st = NULL;
            const char *ic = NULL;
            if (sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
                sqlite3_step(st) == SQLITE_ROW)
                ic = (const char *)sqlite3_column_text(st, 0);
            NR_CHECK_MSG(ic && strcmp(ic, "ok") == 0, "cycle %d: integrity_check: %s", cycle,
                         ic ? ic : "(none)");
            sqlite3_finalize(st);
        }

        /* Every source as the model says (the in-flight op either way). */
        full = cycle % 25 == 24 || cycle == n_kills - 1;
        {
            long present = 0, docs;
            int inflight_seen = 0, inflight_absent = 0;
            int k_in = op_source(in_flight);
            int after = op_kind(in_flight) == OP_REMOVE ? -1 : in_flight;
            for (int k = 0; k < next_op + 1 && k < MAX_OPS; k++) {
                const char *why;
                int64_t id = 0;
                present += model[k] >= 0;
                if (!full && touched[k] != cycle + 1)
                    continue;
                why = source_is(s, k, model[k], &id);
                if (!why && k == k_in && after != model[k])
                    inflight_absent = 1;
                if (why && k == k_in && after != model[k] && !source_is(s, k, after, &id)) {
                    why = NULL;
                    inflight_seen = 1;
                }
                NR_CHECK_MSG(!why, "cycle %d: source %d (model v%d, in flight op %d): %s", cycle, k,
                             model[k], in_flight, why);
            }
            docs = raw_int("SELECT count(*) FROM documents", 0);
            inflight_lost += inflight_absent;
            if (inflight_seen) {
                inflight_applied++;
                present += (after >= 0) - (model[k_in] >= 0);
            }
            NR_CHECK_MSG(docs == present, "cycle %d: %ld documents, the model has %ld", cycle, docs,
                         present);
        }
        if (full) {
            struct vec_check vc = {in_flight, 0, 0};
            int rc = nr_store_check(s);
            NR_CHECK_MSG(rc == NR_OK, "cycle %d: check: %s", cycle, nr_err_msg());
            rc = nr_store_foreach_vector(s, MODEL, check_vector_cb, &vc);
            NR_CHECK_MSG(rc == NR_OK && vc.bad == 0 &&
                             vc.n == raw_int("SELECT count(*) FROM chunks", 0),
                         "cycle %d: vectors: rc %d, %ld read, %ld differ", cycle, rc, vc.n, vc.bad);
        }
        sqlite3_close(raw);
        raw = NULL;
        nr_store_close(s);
        cycles++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t_end);

    printf("  kill points: %d (cycles checked %d); operations acknowledged: %d (ops 0..%d); "
           "the op in flight at the kill had committed %d times, had not %d times\n",
           killed, cycles, acked_total, next_op - 1, inflight_applied, inflight_lost);
    printf("  reopen after kill: max %.1f ms, mean %.1f ms; total %.1f s\n", reopen_max * 1e3,
           cycles ? reopen_sum / cycles * 1e3 : 0.0,
           (double)(t_end.tv_sec - t_start.tv_sec) + (t_end.tv_nsec - t_start.tv_nsec) * 1e-9);
    NR_CHECK_MSG(killed >= n_kills, "only %d of %d kill points", killed, n_kills);
    NR_CHECK_MSG(reopen_max < 5.0, "reopen took %.2f s", reopen_max);
    NR_CHECK_MSG(acked_total > 0, "no operation was ever acknowledged");
    if (nr_test_failed_checks)
        printf("  seed %u repeats these kill points\n", seed);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    char cmd[400];

    snprintf(tmp_dir, sizeof tmp_dir, "%s/nr_store_kill_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        printf("cannot make a temporary directory\n");
        return 1;
    }
    snprintf(db_path, sizeof db_path, "%s/kill.db", tmp_dir);
    NR_RUN(test_kill9_during_ingest);
    if (!getenv("NR_KEEP_TMP")) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
        if (system(cmd) != 0)
            printf("could not remove %s\n", tmp_dir);
    } else {
        printf("kept %s\n", tmp_dir);
    }
    return nr_test_summary();
}

/*
 * Tests for nr_store (and nr_sha256) on real SQLite files in a temporary
 * directory. SQLite's own allocations are routed through nr_malloc (see
 * main), so nr_mem_fail_after() injects failures inside SQLite as well as in
 * the store.
 */
#define _GNU_SOURCE /* unshare, CLONE_NEWNS */
#include "nr_test.h"

#include "nr_err.h"
#include "nr_mem.h"
#include "nr_sha256.h"
#include "nr_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DIM 8

static char tmp_dir[256];

static const char *tpath(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", tmp_dir, name);
    return b;
}

static void remove_db(const char *path)
{
    char p[600];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

/* ---------------------------------------------------------------- raw SQLite access for checks */

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static long long raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long v = -999;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static long long path_int(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    long long v = db ? raw_int(db, sql) : -998;
    sqlite3_close(db);
    return v;
}

/* Rows in the tables and in the FTS index (its docsize shadow table). */
struct counts {
    long long docs, chunks, vectors, fts, colls;
};

static struct counts count_all(const char *path)
{
    struct counts c;
    sqlite3 *db = raw_open(path);
    c.docs = raw_int(db, "SELECT count(*) FROM documents");
    c.chunks = raw_int(db, "SELECT count(*) FROM chunks");
    c.vectors = raw_int(db, "SELECT count(*) FROM vectors");
    c.fts = raw_int(db, "SELECT count(*) FROM chunks_fts_docsize");
    c.colls = raw_int(db, "SELECT count(*) FROM collections");
    sqlite3_close(db);
    return c;
}

static int counts_eq(struct counts a, struct counts b)
{
    return a.docs == b.docs && a.chunks == b.chunks && a.vectors == b.vectors && a.fts == b.fts &&
           a.colls == b.colls;
}

/* ---------------------------------------------------------------- test documents */

struct tdoc {
    struct nr_doc_in d;
    struct nr_chunk_in c[32];
    float v[32 * DIM];
    int n;
    char hash[NR_SHA256_HEX];
    char coll[64], source[128], title[64];
};

static float synth(uint32_t seed, int i)
{
    uint32_t x = seed * 2654435761u + (uint32_t)i * 40503u + 12345u;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    return (float)(x % 20001) / 10000.0f - 1.0f;
}

/* text is borrowed: it must outlive the tdoc. Chunks split it into n
 * pieces at UTF-8 boundaries. */
static void tdoc_make(struct tdoc *t, const char *coll, const char *source, const char *text, int n,
                      uint32_t seed)
{
    size_t len = strlen(text);
    memset(t, 0, sizeof *t);
    snprintf(t->coll, sizeof t->coll, "%s", coll);
    snprintf(t->source, sizeof t->source, "%s", source);
    snprintf(t->title, sizeof t->title, "title of %s", source);
    nr_sha256_hex(text, len, t->hash);
    t->d.collection = t->coll;
    t->d.source = t->source;
    t->d.title = t->title;
    t->d.media_type = "text/plain";
    t->d.metadata_json = NULL;
    t->d.text = text;
    t->d.text_len = len;
    t->d.content_hash = t->hash;
    t->n = n;
    for (int i = 0; i < n; i++) {
        size_t a = len * (size_t)i / (size_t)n, b = len * (size_t)(i + 1) / (size_t)n;
        while (a < len && (text[a] & 0xc0) == 0x80)
            a++;
        while (b < len && (text[b] & 0xc0) == 0x80)
            b++;
        t->c[i].start = (int64_t)a;
        t->c[i].end = (int64_t)b;
        t->c[i].page = i + 1;
        t->c[i].n_tokens = (int)(b - a) / 4;
        t->c[i].heading = (i % 2) ? "Section" : NULL;
    }
    for (int i = 0; i < n * DIM; i++)
        t->v[i] = synth(seed, i);
}

static int tdoc_put(struct nr_store *s, struct tdoc *t, const char *model, int64_t *id, int *st)
{
    return nr_store_put(s, &t->d, t->c, t->n, t->v, DIM, model, id, st);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- SHA-256 */

static void check_hex(const void *data, size_t n, const char *want)
{
    char got[NR_SHA256_HEX];
    nr_sha256_hex(data, n, got);
    NR_CHECK_MSG(strcmp(got, want) == 0, "sha256 of %zu bytes: %s, want %s", n, got, want);
}

static void test_sha256_known_vectors(void)
{
    static char million[1000000];
    char xs[70];

    check_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    check_hex(
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmno"
        "pqrlmnopqrsmnopqrstnopqrstu",
        112, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    memset(million, 'a', sizeof million);
    check_hex(million, sizeof million,
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* Lengths around the padding boundary (55/56: the length fits or not). */
    memset(xs, 'x', sizeof xs);
    check_hex(xs, 55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072");
    check_hex(xs, 56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e");
    check_hex(xs, 63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2");
    check_hex(xs, 64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c");
    check_hex(xs, 65, "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9");
}

static void test_sha256_streaming_matches_one_shot(void)
{
    unsigned char data[1280], one[32], two[32];
    for (int i = 0; i < 1280; i++)
        data[i] = (unsigned char)(i & 255);
    nr_sha256(data, sizeof data, one);
    {
        char hex[NR_SHA256_HEX];
        nr_sha256_to_hex(one, hex);
        /* python: hashlib.sha256(bytes(range(256)) * 5).hexdigest() */
        NR_CHECK(strcmp(hex, "d414b085826eb06778483ba35564dc849e643359f69ed9747878ba6e54985bed") ==
                 0);
    }
    for (size_t split = 0; split <= sizeof data; split += 7) {
        struct nr_sha256 c;
        nr_sha256_init(&c);
        nr_sha256_update(&c, data, split);
        for (size_t i = split; i < sizeof data; i += 61) {
            size_t n = sizeof data - i < 61 ? sizeof data - i : 61;
            nr_sha256_update(&c, data + i, n);
        }
        nr_sha256_final(&c, two);
        NR_CHECK_MSG(memcmp(one, two, 32) == 0, "split at %zu", split);
    }
}

/* ---------------------------------------------------------------- open and migrations */

static void test_open_creates_and_reopens(void)
{
    const char *p = tpath("open.db");
    struct nr_store *s = NULL;
    int fd;

    remove_db(p);
    NR_CHECK_INT(nr_store_open(p, &s), NR_OK);
    NR_CHECK(s != NULL);
    nr_store_close(s);
    NR_CHECK_INT(path_int(p, "PRAGMA user_version"), NR_STORE_SCHEMA_VERSION);
    NR_CHECK_INT(path_int(p, "SELECT count(*) FROM sqlite_schema WHERE name IN ('collections',"
                             "'documents','chunks','vectors','chunks_fts')"),
                 5);
    {
        sqlite3 *db = raw_open(p);
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
        NR_CHECK(sqlite3_step(st) == SQLITE_ROW &&
                 strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    /* Reopening an existing store migrates nothing and keeps the data. */
    NR_CHECK_INT(nr_store_open(p, &s), NR_OK);
    if (s)
        NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);

    /* An empty file (as `touch` makes) is a new store. */
    p = tpath("empty.db");
    remove_db(p);
    fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    NR_CHECK(fd >= 0);
    close(fd);
    NR_CHECK_INT(nr_store_open(p, &s), NR_OK);
    nr_store_close(s);
    NR_CHECK_INT(path_int(p, "PRAGMA user_version"), NR_STORE_SCHEMA_VERSION);
}

static void test_open_refuses_newer_schema(void)
{
    const char *p = tpath("newer.db");
    struct nr_store *s = (struct nr_store *)1;
    sqlite3 *db = NULL;
    char sql[64];
    int rc;

    remove_db(p);
    NR_CHECK_INT(nr_store_open(p, &s), NR_OK);
    nr_store_close(s);
    db = raw_open(p);
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", NR_STORE_SCHEMA_VERSION + 1);
    NR_CHECK_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    NR_CHECK_INT(sqlite3_exec(db, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    rc = nr_store_open(p, &s);
    NR_CHECK_INT(rc, NR_EUNSUPPORTED);
    NR_CHECK(s == NULL);
    NR_CHECK_MSG(strstr(nr_err_msg(), "newer") != NULL, "message: %s", nr_err_msg());
    NR_CHECK_MSG(strstr(nr_err_msg(), tmp_dir) == NULL, "path in message: %s", nr_err_msg());
    /* Refused before anything was written: still in rollback-journal mode. */
    db = raw_open(p);
    {
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
        NR_CHECK(sqlite3_step(st) == SQLITE_ROW &&
                 strcmp((const char *)sqlite3_column_text(st, 0), "delete") == 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

static void test_open_refuses_foreign_files(void)
{
    const char *p = tpath("foreign.db");
    struct nr_store *s = NULL;
    sqlite3 *db = NULL;
    FILE *f;

    remove_db(p);
    NR_CHECK_INT(sqlite3_open(p, &db), SQLITE_OK);
    NR_CHECK_INT(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    NR_CHECK_INT(nr_store_open(p, &s), NR_EFORMAT);
    NR_CHECK_MSG(strstr(nr_err_msg(), "not a nanorag store") != NULL, "%s", nr_err_msg());
    NR_CHECK_INT(path_int(p, "SELECT count(*) FROM sqlite_schema"), 1); /* untouched */

    p = tpath("garbage.db");
    remove_db(p);
    f = fopen(p, "wb");
    NR_CHECK(f != NULL);
    for (int i = 0; i < 4096; i++)
        fputc((i * 131) & 255, f);
    fclose(f);
    NR_CHECK_INT(nr_store_open(p, &s), NR_EFORMAT);
    NR_CHECK_MSG(strstr(nr_err_msg(), tmp_dir) == NULL, "path in message: %s", nr_err_msg());

    NR_CHECK_INT(nr_store_open(tpath("no/such/dir/x.db"), &s), NR_EIO);
    NR_CHECK_MSG(strstr(nr_err_msg(), tmp_dir) == NULL, "path in message: %s", nr_err_msg());
}

struct open_race {
    const char *path;
    atomic_int *go;
    int rc;
    char msg[256];
};

static void *open_race_thread(void *arg)
{
    struct open_race *r = arg;
    struct nr_store *s = NULL;
    while (!atomic_load(r->go))
        sched_yield();
    r->rc = nr_store_open(r->path, &s);
    snprintf(r->msg, sizeof r->msg, "%s", nr_err_msg());
    nr_store_close(s);
    return NULL;
}

static void test_open_race_on_fresh_file(void)
{
    for (int round = 0; round < 5; round++) {
        pthread_t th[4];
        struct open_race r[4];
        atomic_int go = 0;
        char name[32];
        snprintf(name, sizeof name, "race%d.db", round);
        remove_db(tpath(name));
        for (int i = 0; i < 4; i++) {
            r[i].path = tpath(name);
            r[i].go = &go;
            r[i].rc = -100;
            pthread_create(&th[i], NULL, open_race_thread, &r[i]);
        }
        atomic_store(&go, 1);
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            NR_CHECK_MSG(r[i].rc == NR_OK, "round %d thread %d: %d %s", round, i, r[i].rc,
                         r[i].msg);
        }
        NR_CHECK_INT(path_int(tpath(name), "PRAGMA user_version"), NR_STORE_SCHEMA_VERSION);
    }
}

/* ---------------------------------------------------------------- put / get round trips */

static const char *text_a = "Alpha beta gamma. The quick brown fox jumps over the lazy dog. "
                            "Caf\xc3\xa9 au lait, na\xc3\xafve r\xc3\xa9sum\xc3\xa9. "
                            "Zebras are rare here; one zebra was seen.";

static struct nr_store *open_fresh(const char *name)
{
    struct nr_store *s = NULL;
    remove_db(tpath(name));
    if (nr_store_open(tpath(name), &s) != NR_OK) {
        nr_test_fail(__FILE__, __LINE__, "open %s: %s", name, nr_err_msg());
        return NULL;
    }
    return s;
}

struct vec_seen {
    int n;
    int64_t ids[64], docs[64], colls[64];
    float v[64][DIM];
    int bad_dim;
};

static int collect_vec(void *ctx, int64_t chunk_id, int64_t doc_id, int64_t coll_id, const float *v,
                       int dim)
{
    struct vec_seen *s = ctx;
    if (dim != DIM || s->n >= 64) {
        s->bad_dim = 1;
        return 0;
    }
    s->ids[s->n] = chunk_id;
    s->docs[s->n] = doc_id;
    s->colls[s->n] = coll_id;
    memcpy(s->v[s->n], v, sizeof s->v[0]);
    s->n++;
    return 0;
}

static void test_put_get_roundtrip(void)
{
    struct nr_store *s = open_fresh("rt.db");
    struct tdoc t;
    struct nr_store_doc *d = NULL, *list = NULL;
    struct nr_store_collection *cols = NULL;
    struct vec_seen seen;
    int64_t id = 0, id2 = 0;
    int st = 0, n = 0;
    char *text = NULL;
    size_t len = 0;

    if (!s)
        return;
    tdoc_make(&t, "docs", "notes/a.txt", text_a, 3, 1);
    t.c[0].heading = ""; /* the chunker's "no heading": stored as NULL */
    t.d.metadata_json = "{\"lang\": \"en\", \"year\": 2024, \"draft\": false}";
    NR_CHECK_INT(tdoc_put(s, &t, "minilm", &id, &st), NR_OK);
    NR_CHECK_INT(st, NR_STORE_ADDED);
    NR_CHECK(id > 0);

    NR_CHECK_INT(nr_store_has(s, "docs", "notes/a.txt", t.hash, "minilm", &id2), 1);
    NR_CHECK_INT(id2, id);
    NR_CHECK_INT(nr_store_has(s, "docs", "notes/a.txt", NULL, NULL, NULL), 1);
    NR_CHECK_INT(nr_store_has(s, "docs", "notes/a.txt",
                              "0000000000000000000000000000000000000000000000000000000000000000",
                              "minilm", NULL),
                 0);
    NR_CHECK_INT(nr_store_has(s, "docs", "notes/a.txt", t.hash, "other-model", NULL), 0);
    NR_CHECK_INT(nr_store_has(s, "docs", "notes/b.txt", NULL, NULL, NULL), 0);
    NR_CHECK_INT(nr_store_has(s, "nope", "notes/a.txt", NULL, NULL, NULL), 0);
    NR_CHECK_INT(nr_store_has(s, "bad name", "x", NULL, NULL, NULL), NR_EINVAL);

    NR_CHECK_INT(nr_store_doc_get(s, id, &d), NR_OK);
    if (d) {
        NR_CHECK_INT(d->id, id);
        NR_CHECK(strcmp(d->collection, "docs") == 0);
        NR_CHECK(strcmp(d->source, "notes/a.txt") == 0);
        NR_CHECK(strcmp(d->title, "title of notes/a.txt") == 0);
        NR_CHECK(strcmp(d->media_type, "text/plain") == 0);
        NR_CHECK(strcmp(d->metadata_json, t.d.metadata_json) == 0);
        NR_CHECK(strcmp(d->content_hash, t.hash) == 0);
        NR_CHECK_INT(d->n_chunks, 3);
        NR_CHECK_INT(d->text_len, strlen(text_a));
        NR_CHECK(d->created_at > 1600000000000LL && d->updated_at == d->created_at);
        for (int i = 0; i < 3 && d->chunk_ids; i++) {
            struct nr_store_chunk *c = NULL;
            NR_CHECK_INT(nr_store_chunk_get(s, d->chunk_ids[i], &c), NR_OK);
            if (!c)
                continue;
            NR_CHECK_INT(c->doc_id, id);
            NR_CHECK_INT(c->ordinal, i);
            NR_CHECK_INT(c->start, t.c[i].start);
            NR_CHECK_INT(c->end, t.c[i].end);
            NR_CHECK_INT(c->page, i + 1);
            NR_CHECK_INT(c->n_tokens, t.c[i].n_tokens);
            NR_CHECK((i % 2) ? (c->heading && strcmp(c->heading, "Section") == 0) : !c->heading);
            NR_CHECK(strlen(c->text) == (size_t)(c->end - c->start) &&
                     memcmp(c->text, text_a + c->start, strlen(c->text)) == 0);
            NR_CHECK(strcmp(c->source, "notes/a.txt") == 0);
            NR_CHECK(strcmp(c->title, "title of notes/a.txt") == 0);
            nr_store_chunk_free(c);
        }
    }

    NR_CHECK_INT(nr_store_doc_text(s, id, &text, &len), NR_OK);
    NR_CHECK(len == strlen(text_a) && text && strcmp(text, text_a) == 0);
    nr_free(text);

    /* A second document in another collection, with no title or metadata. */
    int64_t id_b = 0;
    {
        struct tdoc t2;
        int64_t id3;
        tdoc_make(&t2, "other", "b.md", "Bravo charlie delta echo.", 1, 2);
        t2.d.title = NULL;
        t2.d.media_type = NULL;
        NR_CHECK_INT(tdoc_put(s, &t2, "minilm", &id3, &st), NR_OK);
        NR_CHECK_INT(st, NR_STORE_ADDED);
        NR_CHECK(id3 > id);
        id_b = id3;
    }
    NR_CHECK_INT(nr_store_doc_list(s, NULL, 0, 100, &list, &n), NR_OK);
    NR_CHECK_INT(n, 2);
    if (n == 2) {
        NR_CHECK_INT(list[0].id, id);
        NR_CHECK(list[0].chunk_ids == NULL);
        NR_CHECK(strcmp(list[1].source, "b.md") == 0 && list[1].title == NULL &&
                 list[1].metadata_json == NULL && list[1].media_type == NULL);
    }
    nr_store_doc_list_free(list, n);
    NR_CHECK_INT(nr_store_doc_list(s, "other", 0, 100, &list, &n), NR_OK);
    NR_CHECK_INT(n, 1);
    nr_store_doc_list_free(list, n);
    NR_CHECK_INT(nr_store_doc_list(s, NULL, id, 1, &list, &n), NR_OK); /* paging */
    NR_CHECK(n == 1 && list[0].id > id);
    nr_store_doc_list_free(list, n);
    NR_CHECK_INT(nr_store_doc_list(s, "missing", 0, 100, &list, &n), NR_OK);
    NR_CHECK_INT(n, 0);
    nr_store_doc_list_free(list, n);

    NR_CHECK_INT(nr_store_collections(s, &cols, &n), NR_OK);
    NR_CHECK_INT(n, 2);
    if (n == 2) {
        NR_CHECK(strcmp(cols[0].name, "docs") == 0 && cols[0].n_docs == 1 && cols[0].n_chunks == 3);
        NR_CHECK(strcmp(cols[1].name, "other") == 0 && cols[1].n_docs == 1 &&
                 cols[1].n_chunks == 1);
    }
    nr_free(cols);

    /* Vectors come back bit for bit, with their document and collection. */
    memset(&seen, 0, sizeof seen);
    NR_CHECK_INT(nr_store_foreach_vector(s, "minilm", collect_vec, &seen), NR_OK);
    NR_CHECK_INT(seen.n, 4);
    NR_CHECK(!seen.bad_dim);
    for (int i = 0; i < 3 && d && d->chunk_ids && seen.n == 4; i++) {
        NR_CHECK_INT(seen.ids[i], d->chunk_ids[i]);
        NR_CHECK_INT(seen.docs[i], id);
        NR_CHECK_INT(seen.colls[i], d->collection_id);
        NR_CHECK(memcmp(seen.v[i], t.v + i * DIM, sizeof seen.v[i]) == 0);
    }
    memset(&seen, 0, sizeof seen);
    NR_CHECK_INT(nr_store_foreach_vector(s, "no-such-model", collect_vec, &seen), NR_OK);
    NR_CHECK_INT(seen.n, 0);
    /* One document's vectors only: the first document's three, in order; the
     * second's one; none for a missing document or another model. */
    memset(&seen, 0, sizeof seen);
    NR_CHECK_INT(nr_store_foreach_doc_vector(s, "minilm", id, collect_vec, &seen), NR_OK);
    NR_CHECK_INT(seen.n, 3);
    for (int i = 0; i < 3 && d && d->chunk_ids && seen.n == 3; i++) {
        NR_CHECK_INT(seen.ids[i], d->chunk_ids[i]);
        NR_CHECK_INT(seen.docs[i], id);
        NR_CHECK(memcmp(seen.v[i], t.v + i * DIM, sizeof seen.v[i]) == 0);
    }
    memset(&seen, 0, sizeof seen);
    NR_CHECK_INT(nr_store_foreach_doc_vector(s, "minilm", id_b, collect_vec, &seen), NR_OK);
    NR_CHECK(seen.n == 1 && seen.docs[0] == id_b);
    memset(&seen, 0, sizeof seen);
    NR_CHECK_INT(nr_store_foreach_doc_vector(s, "minilm", 999999, collect_vec, &seen), NR_OK);
    NR_CHECK_INT(nr_store_foreach_doc_vector(s, "other-model", id, collect_vec, &seen), NR_OK);
    NR_CHECK_INT(seen.n, 0);
    NR_CHECK_INT(nr_store_foreach_doc_vector(s, "minilm", 0, collect_vec, &seen), NR_EINVAL);

    NR_CHECK_INT(nr_store_doc_get(s, 999999, &list), NR_ENOTFOUND);
    {
        struct nr_store_chunk *c = NULL;
        NR_CHECK_INT(nr_store_chunk_get(s, 999999, &c), NR_ENOTFOUND);
        NR_CHECK(c == NULL);
    }
    nr_store_doc_free(d);
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);

    /* Everything is still there after a reopen. */
    NR_CHECK_INT(nr_store_open(tpath("rt.db"), &s), NR_OK);
    NR_CHECK_INT(nr_store_has(s, "docs", "notes/a.txt", t.hash, "minilm", NULL), 1);
    nr_store_close(s);
}

static int stop_after_two(void *ctx, int64_t chunk_id, int64_t doc_id, int64_t coll_id,
                          const float *v, int dim)
{
    int *n = ctx;
    return ++*n == 2 ? 42 : 0;
}

static void test_foreach_stops_on_callback(void)
{
    struct nr_store *s = open_fresh("stop.db");
    struct tdoc t;
    int n = 0;
    if (!s)
        return;
    tdoc_make(&t, "c", "x", text_a, 5, 3);
    NR_CHECK_INT(tdoc_put(s, &t, "m", NULL, NULL), NR_OK);
    NR_CHECK_INT(nr_store_foreach_vector(s, "m", stop_after_two, &n), 42);
    NR_CHECK_INT(n, 2);
    nr_store_close(s);
}

static void test_put_unchanged_is_a_noop(void)
{
    const char *p = tpath("same.db");
    struct nr_store *s = open_fresh("same.db");
    struct nr_store_doc *d1 = NULL, *d2 = NULL;
    struct tdoc t;
    sqlite3 *watch;
    long long v0, v1;
    int64_t id1 = 0, id2 = 0;
    int st = 0;

    if (!s)
        return;
    tdoc_make(&t, "docs", "a", text_a, 4, 1);
    NR_CHECK_INT(tdoc_put(s, &t, "m1", &id1, &st), NR_OK);
    NR_CHECK_INT(nr_store_doc_get(s, id1, &d1), NR_OK);

    /* data_version changes when another connection commits a change. */
    watch = raw_open(p);
    v0 = raw_int(watch, "PRAGMA data_version");
    t.d.title = "a new title does not count";
    NR_CHECK_INT(tdoc_put(s, &t, "m1", &id2, &st), NR_OK);
    NR_CHECK_INT(st, NR_STORE_UNCHANGED);
    NR_CHECK_INT(id2, id1);
    v1 = raw_int(watch, "PRAGMA data_version");
    NR_CHECK_MSG(v0 == v1, "unchanged put wrote: data_version %lld -> %lld", v0, v1);
    NR_CHECK_INT(nr_store_doc_get(s, id1, &d2), NR_OK);
    if (d1 && d2) {
        NR_CHECK(strcmp(d2->title, "title of a") == 0);
        NR_CHECK(memcmp(d1->chunk_ids, d2->chunk_ids, 4 * sizeof(int64_t)) == 0);
        NR_CHECK_INT(d2->updated_at, d1->updated_at);
    }
    nr_store_doc_free(d2);
    d2 = NULL;

    /* Same bytes, new embedding model: replaced (new vectors needed). */
    NR_CHECK_INT(tdoc_put(s, &t, "m2", &id2, &st), NR_OK);
    NR_CHECK_INT(st, NR_STORE_REPLACED);
    NR_CHECK_INT(id2, id1);
    v1 = raw_int(watch, "PRAGMA data_version");
    NR_CHECK(v1 != v0);
    NR_CHECK_INT(nr_store_has(s, "docs", "a", t.hash, "m2", NULL), 1);
    NR_CHECK_INT(nr_store_has(s, "docs", "a", t.hash, "m1", NULL), 0);
    sqlite3_close(watch);
    nr_store_doc_free(d1);
    nr_store_close(s);
}

static void test_replace_is_atomic_and_leaves_no_orphans(void)
{
    const char *p = tpath("replace.db");
    struct nr_store *s = open_fresh("replace.db");
    struct nr_store_doc *old = NULL, *cur = NULL;
    struct nr_store_hit hits[10];
    struct tdoc t1, t2, other;
    struct counts c;
    int64_t id = 0, id2 = 0;
    int st = 0, n = 0;

    if (!s)
        return;
    tdoc_make(&other, "docs", "other", "Unrelated text about pelicans and harbours.", 2, 9);
    NR_CHECK_INT(tdoc_put(s, &other, "m", NULL, NULL), NR_OK);
    tdoc_make(&t1, "docs", "a", "Version one speaks of walruses. Walruses everywhere, walrus.", 5,
              1);
    NR_CHECK_INT(tdoc_put(s, &t1, "m", &id, &st), NR_OK);
    NR_CHECK_INT(nr_store_doc_get(s, id, &old), NR_OK);
    c = count_all(p);
    NR_CHECK(c.docs == 2 && c.chunks == 7 && c.vectors == 7 && c.fts == 7);

    tdoc_make(&t2, "docs", "a", "Version two is about narwhals only.", 2, 2);
    NR_CHECK_INT(tdoc_put(s, &t2, "m", &id2, &st), NR_OK);
    NR_CHECK_INT(st, NR_STORE_REPLACED);
    NR_CHECK_INT(id2, id);
    c = count_all(p);
    NR_CHECK_MSG(c.docs == 2 && c.chunks == 4 && c.vectors == 4 && c.fts == 4,
                 "after replace: %lld docs %lld chunks %lld vectors %lld fts", c.docs, c.chunks,
                 c.vectors, c.fts);
    for (int i = 0; old && i < old->n_chunks; i++) {
        struct nr_store_chunk *ch = NULL;
        NR_CHECK_INT(nr_store_chunk_get(s, old->chunk_ids[i], &ch), NR_ENOTFOUND);
    }
    NR_CHECK_INT(nr_store_doc_get(s, id, &cur), NR_OK);
    if (cur && old) {
        NR_CHECK_INT(cur->n_chunks, 2);
        NR_CHECK(cur->chunk_ids[0] > old->chunk_ids[old->n_chunks - 1]); /* ids not reused */
        NR_CHECK_INT(cur->created_at, old->created_at);
        NR_CHECK(strcmp(cur->content_hash, t2.hash) == 0);
    }
    NR_CHECK_INT(nr_store_bm25(s, "walrus walruses", 10, NULL, hits, &n), NR_OK);
    NR_CHECK_INT(n, 0);
    NR_CHECK_INT(nr_store_bm25(s, "narwhals", 10, NULL, hits, &n), NR_OK);
    NR_CHECK(n == 1 && hits[0].doc_id == id);
    NR_CHECK_INT(path_int(p, "SELECT count(*) FROM vectors v LEFT JOIN chunks c"
                             " ON c.id = v.chunk_id WHERE c.id IS NULL"),
                 0);
    NR_CHECK_INT(nr_store_check(s), NR_OK);

    /* A replacement that fails validation leaves the old version whole. */
    t1.c[4].end = (int64_t)t1.d.text_len + 1;
    NR_CHECK_INT(tdoc_put(s, &t1, "m", NULL, NULL), NR_EINVAL);
    NR_CHECK_INT(nr_store_has(s, "docs", "a", t2.hash, "m", NULL), 1);
    NR_CHECK(counts_eq(count_all(p), c));

    nr_store_doc_free(old);
    nr_store_doc_free(cur);
    nr_store_close(s);
}

static void test_remove_removes_everything(void)
{
    const char *p = tpath("remove.db");
    struct nr_store *s = open_fresh("remove.db");
    struct nr_store_hit hits[4];
    struct tdoc t, keep;
    struct counts c;
    int64_t id = 0, keep_id = 0;
    int n = 0;

    if (!s)
        return;
    tdoc_make(&keep, "docs", "keep", "Keep this document about otters.", 2, 5);
    NR_CHECK_INT(tdoc_put(s, &keep, "m", &keep_id, NULL), NR_OK);
    tdoc_make(&t, "docs", "gone", "Remove this document about beavers.", 3, 6);
    NR_CHECK_INT(tdoc_put(s, &t, "m", &id, NULL), NR_OK);
    NR_CHECK_INT(nr_store_remove(s, id), NR_OK);
    c = count_all(p);
    NR_CHECK(c.docs == 1 && c.chunks == 2 && c.vectors == 2 && c.fts == 2);
    NR_CHECK_INT(nr_store_has(s, "docs", "gone", NULL, NULL, NULL), 0);
    NR_CHECK_INT(nr_store_bm25(s, "beavers", 4, NULL, hits, &n), NR_OK);
    NR_CHECK_INT(n, 0);
    NR_CHECK_INT(nr_store_bm25(s, "otters", 4, NULL, hits, &n), NR_OK);
    NR_CHECK_INT(n, 1);
    NR_CHECK_INT(nr_store_remove(s, id), NR_ENOTFOUND);
    NR_CHECK_INT(nr_store_remove(s, -3), NR_ENOTFOUND);
    NR_CHECK(counts_eq(count_all(p), c));
    /* A new document never gets the removed id back. */
    {
        int64_t id2 = 0;
        NR_CHECK_INT(tdoc_put(s, &t, "m", &id2, NULL), NR_OK);
        NR_CHECK(id2 > id);
    }
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);
}

static void test_empty_document(void)
{
    struct nr_store *s = open_fresh("emptydoc.db");
    struct nr_store_doc *d = NULL;
    struct nr_doc_in in = {"docs", "empty.txt", NULL, "text/plain", NULL, NULL, 0, NULL};
    int64_t id = 0;
    int st = 0;

    if (!s)
        return;
    NR_CHECK_INT(nr_store_put(s, &in, NULL, 0, NULL, 0, NULL, &id, &st), NR_OK);
    NR_CHECK_INT(st, NR_STORE_ADDED);
    NR_CHECK_INT(nr_store_doc_get(s, id, &d), NR_OK);
    if (d) {
        NR_CHECK_INT(d->n_chunks, 0);
        NR_CHECK_INT(d->text_len, 0);
        /* NULL content_hash: the store hashes the text (here: nothing). */
        NR_CHECK(strcmp(d->content_hash,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    }
    nr_store_doc_free(d);
    NR_CHECK_INT(nr_store_put(s, &in, NULL, 0, NULL, 0, NULL, &id, &st), NR_OK);
    NR_CHECK_INT(st, NR_STORE_UNCHANGED);
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);
}

static void test_put_rejects_bad_input_and_writes_nothing(void)
{
    const char *p = tpath("bad.db");
    struct nr_store *s = open_fresh("bad.db");
    struct tdoc t;
    struct counts before;
    static const char utf8_text[] = "na\xc3\xafve caf\xc3\xa9 text";
    static const char bad_utf8[] = "abc\xc3(def";
    float nan_v;

    if (!s)
        return;
    tdoc_make(&t, "docs", "seed", text_a, 2, 1);
    NR_CHECK_INT(tdoc_put(s, &t, "m", NULL, NULL), NR_OK);
    before = count_all(p);

#define EXPECT_REJECT(code, mutate)                                                                \
    do {                                                                                           \
        tdoc_make(&t, "docs", "new", text_a, 3, 1);                                                \
        mutate;                                                                                    \
        NR_CHECK_INT(nr_store_put(s, &t.d, t.c, t.n, t.v, DIM, "m", NULL, NULL), code);            \
        NR_CHECK_MSG(counts_eq(count_all(p), before), "something was written: %s", #mutate);       \
    } while (0)

    EXPECT_REJECT(NR_EINVAL, t.c[2].end = (int64_t)t.d.text_len + 1);
    EXPECT_REJECT(NR_EINVAL, t.c[0].start = -1);
    EXPECT_REJECT(NR_EINVAL, (t.c[1].start = 10, t.c[1].end = 9));
    EXPECT_REJECT(NR_EINVAL, t.c[1].start = (int64_t)t.d.text_len + 5);
    EXPECT_REJECT(NR_EINVAL, t.c[0].page = -2);
    EXPECT_REJECT(NR_EINVAL, t.c[0].n_tokens = -1);
    EXPECT_REJECT(NR_EINVAL, t.d.collection = "has space");
    EXPECT_REJECT(NR_EINVAL, t.d.collection = "../etc");
    EXPECT_REJECT(NR_EINVAL, t.d.collection = "");
    EXPECT_REJECT(NR_EINVAL, t.d.collection = NULL);
    EXPECT_REJECT(NR_EINVAL, t.d.source = "");
    EXPECT_REJECT(NR_EINVAL, t.d.content_hash = "abc");
    EXPECT_REJECT(NR_EINVAL, t.d.content_hash = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA4"
                                                "95991B7852B855");
    EXPECT_REJECT(NR_EINVAL, t.d.metadata_json = "{\"a\": 1");
    EXPECT_REJECT(NR_EINVAL, t.d.metadata_json = "[1, 2]");
    EXPECT_REJECT(NR_EINVAL, t.d.metadata_json = "{\"a\": 1, \"a\": 2}");
    EXPECT_REJECT(NR_EINVAL, t.d.title = bad_utf8);
    EXPECT_REJECT(NR_EINVAL, (t.d.text = bad_utf8, t.d.text_len = strlen(bad_utf8), t.n = 1,
                              t.c[0].start = 0, t.c[0].end = 3));
    EXPECT_REJECT(NR_EINVAL,
                  (t.d.text = "a\0b", t.d.text_len = 3, t.n = 1, t.c[0].start = 0, t.c[0].end = 3));
    /* a chunk boundary inside the two bytes of 'ï' */
    EXPECT_REJECT(NR_EINVAL, (t.d.text = utf8_text, t.d.text_len = strlen(utf8_text), t.n = 1,
                              t.c[0].start = 0, t.c[0].end = 3));
    EXPECT_REJECT(NR_EINVAL, t.n = -1);
    EXPECT_REJECT(NR_ELIMIT, t.n = NR_STORE_MAX_CHUNKS + 1);
    EXPECT_REJECT(NR_ELIMIT, t.d.text_len = (size_t)NR_STORE_MAX_TEXT + 1);

    /* Vectors: required, finite, a sane dimension, a model. */
    tdoc_make(&t, "docs", "new", text_a, 3, 1);
    NR_CHECK_INT(nr_store_put(s, &t.d, t.c, t.n, NULL, DIM, "m", NULL, NULL), NR_EINVAL);
    NR_CHECK_INT(nr_store_put(s, &t.d, t.c, t.n, t.v, 0, "m", NULL, NULL), NR_EINVAL);
    NR_CHECK_INT(nr_store_put(s, &t.d, t.c, t.n, t.v, NR_STORE_MAX_DIM + 1, "m", NULL, NULL),
                 NR_EINVAL);
    NR_CHECK_INT(nr_store_put(s, &t.d, t.c, t.n, t.v, DIM, NULL, NULL, NULL), NR_EINVAL);
    NR_CHECK_INT(nr_store_put(s, &t.d, t.c, t.n, t.v, DIM, "", NULL, NULL), NR_EINVAL);
    nan_v = nanf("");
    t.v[2 * DIM + 3] = nan_v;
    NR_CHECK_INT(nr_store_put(s, &t.d, t.c, t.n, t.v, DIM, "m", NULL, NULL), NR_EINVAL);
    NR_CHECK_MSG(strstr(nr_err_msg(), "chunk 2") != NULL, "message: %s", nr_err_msg());
    t.v[2 * DIM + 3] = 1.0f / 0.0f;
    NR_CHECK_INT(nr_store_put(s, &t.d, t.c, t.n, t.v, DIM, "m", NULL, NULL), NR_EINVAL);
    NR_CHECK(counts_eq(count_all(p), before));

    /* The message names what was wrong. */
    tdoc_make(&t, "docs", "new", text_a, 3, 1);
    t.c[1].end = 100000;
    NR_CHECK_INT(tdoc_put(s, &t, "m", NULL, NULL), NR_EINVAL);
    NR_CHECK_MSG(strstr(nr_err_msg(), "chunk 1") && strstr(nr_err_msg(), "outside"), "message: %s",
                 nr_err_msg());
#undef EXPECT_REJECT
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);
}

/* ---------------------------------------------------------------- BM25 */

/* A small corpus: "zebra" 3 times in z3, once in z1, never elsewhere. */
static const char *corpus[][2] = {
    {"z3", "The zebra stood by the zebra crossing; a zebra foal followed."},
    {"z1", "A lion watched one zebra from the tall grass by the river."},
    {"lions", "Lions rest in the shade. The lion pride sleeps most of the day."},
    {"cafe", "Le caf\xc3\xa9 sert un cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
             "e d\xc3\xa9licieux."},
    {"ops", "Choose this or that, near or far; not and or are everyday words."},
    {"river", "The river runs past the grass, the trees, to the sea."},
};

static struct nr_store *open_corpus(const char *name, struct tdoc *docs, int64_t *ids)
{
    struct nr_store *s = open_fresh(name);
    if (!s)
        return NULL;
    for (int i = 0; i < 6; i++) {
        tdoc_make(&docs[i], i < 4 ? "animals" : "misc", corpus[i][0], corpus[i][1], 1, (uint32_t)i);
        docs[i].d.metadata_json = i % 2 ? "{\"kind\": \"odd\", \"n\": 1, \"ok\": true}"
                                        : "{\"kind\": \"even\", \"n\": 2.5, \"ok\": false}";
        if (tdoc_put(s, &docs[i], "m", &ids[i], NULL) != NR_OK)
            nr_test_fail(__FILE__, __LINE__, "put %d: %s", i, nr_err_msg());
    }
    return s;
}

static void test_bm25_ranking(void)
{
    struct tdoc docs[6];
    int64_t ids[6];
    struct nr_store_hit hits[10];
    int n = 0;
    struct nr_store *s = open_corpus("bm25.db", docs, ids);

    if (!s)
        return;
    NR_CHECK_INT(nr_store_bm25(s, "zebra", 10, NULL, hits, &n), NR_OK);
    NR_CHECK_INT(n, 2);
    if (n == 2) {
        NR_CHECK_INT(hits[0].doc_id, ids[0]); /* three mentions beat one */
        NR_CHECK_INT(hits[1].doc_id, ids[1]);
        NR_CHECK(hits[0].score > hits[1].score && hits[1].score > 0);
    }
    /* A common word adds little; the rare one still decides. */
    NR_CHECK_INT(nr_store_bm25(s, "the zebra", 10, NULL, hits, &n), NR_OK);
    NR_CHECK(n >= 4 && hits[0].doc_id == ids[0]);
    for (int i = 1; i < n; i++)
        NR_CHECK(hits[i - 1].score >= hits[i].score);
    NR_CHECK_INT(nr_store_bm25(s, "the zebra", 1, NULL, hits, &n), NR_OK);
    NR_CHECK_INT(n, 1);
    /* Case and diacritics fold both ways. */
    NR_CHECK_INT(nr_store_bm25(s, "CAFE creme", 10, NULL, hits, &n), NR_OK);
    NR_CHECK(n == 1 && hits[0].doc_id == ids[3]);
    NR_CHECK_INT(nr_store_bm25(s,
                               "br\xc3\xbbl\xc3\xa9"
                               "e",
                               10, NULL, hits, &n),
                 NR_OK);
    NR_CHECK(n == 1 && hits[0].doc_id == ids[3]);
    NR_CHECK_INT(nr_store_bm25(s, "walrus", 10, NULL, hits, &n), NR_OK);
    NR_CHECK_INT(n, 0);
    nr_store_close(s);
}

static void test_bm25_user_syntax_is_plain_words(void)
{
    /* Each query with FTS5 syntax, and the plain words it must mean. */
    static const char *pairs[][2] = {
        {"\"zebra", "zebra"},
        {"zebra\"", "zebra"},
        {"\"zebra\"", "zebra"},
        {"zebra*", "zebra"},
        {"zeb*ra zebra", "zeb ra zebra"},
        {"text:zebra", "text zebra"},
        {"{text}:zebra", "text zebra"},
        {"(zebra", "zebra"},
        {"zebra)", "zebra"},
        {"((zebra", "zebra"},
        {"^zebra", "zebra"},
        {"-zebra", "zebra"},
        {"zebra AND", "zebra and"},
        {"NOT zebra", "not zebra"},
        {"zebra NEAR/2", "zebra near 2"},
        {"NEAR(zebra", "near zebra"},
        {"NEAR(zebra foal", "near zebra foal"},
        {"zebra + foal", "zebra foal"},
        {"'zebra'", "zebra"},
        {"zebra; DROP TABLE", "zebra drop table"},
        {"zebra\\", "zebra"},
        {"zebra OR", "zebra or"},
        {"OR zebra OR", "or zebra or"},
        {"chunks_fts:zebra", "chunks fts zebra"},
        {"zebra\" OR \"lion", "zebra or lion"},
    };
    struct tdoc docs[6];
    int64_t ids[6];
    struct nr_store_hit hits[10];
    int n = 0, rc;
    struct nr_store *s = open_corpus("inject.db", docs, ids);
    char big[NR_STORE_MAX_QUERY + 2];

    if (!s)
        return;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        struct nr_store_hit plain[10];
        int n_plain = 0, has_z3 = 0;
        rc = nr_store_bm25(s, pairs[i][0], 10, NULL, hits, &n);
        NR_CHECK_MSG(rc == NR_OK, "query [%s]: %d %s", pairs[i][0], rc, nr_err_msg());
        NR_CHECK_INT(nr_store_bm25(s, pairs[i][1], 10, NULL, plain, &n_plain), NR_OK);
        NR_CHECK_MSG(n == n_plain, "query [%s]: %d hits, [%s] %d", pairs[i][0], n, pairs[i][1],
                     n_plain);
        for (int j = 0; j < n && j < n_plain; j++) {
            NR_CHECK_MSG(hits[j].chunk_id == plain[j].chunk_id && hits[j].score == plain[j].score,
                         "query [%s] hit %d differs from [%s]", pairs[i][0], j, pairs[i][1]);
            has_z3 |= hits[j].doc_id == ids[0];
        }
        NR_CHECK_MSG(has_z3, "query [%s]: the zebra document is missing", pairs[i][0]);
    }
    /* Operators are words: "or", "near", "not", "and" occur in the "ops" document only. */
    {
        static const char *words[] = {"OR", "NEAR", "NOT", "AND", "or", "\"OR\"", "NEAR()"};
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
            rc = nr_store_bm25(s, words[i], 10, NULL, hits, &n);
            NR_CHECK_MSG(rc == NR_OK && n == 1 && hits[0].doc_id == ids[4],
                         "query [%s]: %d, %d hits", words[i], rc, n);
        }
    }
    /* Nothing to search for: no hits, no error. */
    {
        static const char *empty[] = {"",   "   ",       "\"\"",
                                      "()", "*",         "!!! ??? ...",
                                      ":",  "\"\" \"\"", "\xe2\x80\x94 \xe2\x80\x9c\xe2\x80\x9d"};
        for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
            n = 7;
            rc = nr_store_bm25(s, empty[i], 10, NULL, hits, &n);
            NR_CHECK_MSG(rc == NR_OK && n == 0, "query [%s]: %d, %d hits", empty[i], rc, n);
        }
    }
    NR_CHECK_INT(nr_store_bm25(s, "zebra \xff", 10, NULL, hits, &n), NR_EINVAL);
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    NR_CHECK_INT(nr_store_bm25(s, big, 10, NULL, hits, &n), NR_ELIMIT);
    NR_CHECK_INT(nr_store_bm25(s, "zebra", 0, NULL, hits, &n), NR_EINVAL);
    NR_CHECK_INT(nr_store_bm25(s, "zebra", NR_STORE_MAX_K + 1, NULL, hits, &n), NR_EINVAL);
    /* Many words: the first NR_STORE_MAX_TERMS are used, the rest ignored. */
    {
        char many[NR_STORE_MAX_QUERY];
        size_t o = 0;
        for (int i = 0; i < 100; i++)
            o += (size_t)snprintf(many + o, sizeof many - o, "w%d ", i);
        snprintf(many + o, sizeof many - o, "zebra");
        NR_CHECK_INT(nr_store_bm25(s, many, 10, NULL, hits, &n), NR_OK);
        NR_CHECK_INT(n, 0);
    }
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);
}

static void test_bm25_filters(void)
{
    struct tdoc docs[6];
    int64_t ids[6];
    struct nr_store_hit hits[10];
    struct nr_store_filter f;
    int n = 0;
    struct nr_store *s = open_corpus("filters.db", docs, ids);

    if (!s)
        return;
    /* "the" is in z3, z1, lions (animals) and river (misc). */
    memset(&f, 0, sizeof f);
    f.collection = "misc";
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_OK);
    NR_CHECK(n == 1 && hits[0].doc_id == ids[5]);
    f.collection = "animals";
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_OK);
    NR_CHECK_INT(n, 3);
    for (int i = 0; i < n; i++)
        NR_CHECK(hits[i].doc_id == ids[0] || hits[i].doc_id == ids[1] || hits[i].doc_id == ids[2]);
    f.collection = "nosuch";
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_OK);
    NR_CHECK_INT(n, 0);
    f.collection = "bad name!";
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_EINVAL);

    memset(&f, 0, sizeof f);
    f.doc_id = ids[1];
    NR_CHECK_INT(nr_store_bm25(s, "the zebra", 10, &f, hits, &n), NR_OK);
    NR_CHECK(n == 1 && hits[0].doc_id == ids[1]);

    /* Metadata: odd documents are 1, 3, 5 (z1, cafe, river). */
    memset(&f, 0, sizeof f);
    f.meta_key = "kind";
    f.meta_value = "odd";
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_OK);
    NR_CHECK_INT(n, 2);
    for (int i = 0; i < n; i++)
        NR_CHECK(hits[i].doc_id == ids[1] || hits[i].doc_id == ids[5]);
    f.meta_key = "n";
    f.meta_value = "2.5";
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_OK);
    NR_CHECK_INT(n, 2); /* z3, lions */
    f.meta_key = "ok";
    f.meta_value = "true";
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_OK);
    NR_CHECK_INT(n, 2); /* z1, river */
    f.meta_value = "1"; /* booleans are not numbers */
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_OK);
    NR_CHECK_INT(n, 0);
    f.meta_key = "kind";
    f.meta_value = "\"odd\""; /* a string matches its value, not its JSON text */
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_OK);
    NR_CHECK_INT(n, 0);
    f.meta_key = "missing";
    f.meta_value = "odd";
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_OK);
    NR_CHECK_INT(n, 0);
    f.meta_key = "kind\" OR 1=1 --";
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_EINVAL);
    f.meta_key = "";
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_EINVAL);
    f.meta_key = "kind";
    f.meta_value = NULL;
    NR_CHECK_INT(nr_store_bm25(s, "the", 10, &f, hits, &n), NR_EINVAL);

    /* All filters together. */
    memset(&f, 0, sizeof f);
    f.collection = "animals";
    f.meta_key = "kind";
    f.meta_value = "even";
    NR_CHECK_INT(nr_store_bm25(s, "zebra lion", 10, &f, hits, &n), NR_OK);
    NR_CHECK_INT(n, 2); /* z3 (zebra), lions (lion) */
    f.doc_id = ids[2];
    NR_CHECK_INT(nr_store_bm25(s, "zebra lion", 10, &f, hits, &n), NR_OK);
    NR_CHECK(n == 1 && hits[0].doc_id == ids[2]);
    nr_store_close(s);
}

/* ---------------------------------------------------------------- readers during writes */

#define RW_DOCS 4

struct rw_shared {
    const char *path;
    atomic_int stop;
    atomic_int errors;
    atomic_long reads, writes;
    atomic_long max_put_us; /* slowest put, waiting for the other writer included */
    char msg[512];
    pthread_mutex_t msg_lock;
};

static void rw_error(struct rw_shared *sh, const char *fmt, long a, long b)
{
    pthread_mutex_lock(&sh->msg_lock);
    if (!atomic_load(&sh->errors))
        snprintf(sh->msg, sizeof sh->msg, fmt, a, b, nr_err_msg());
    atomic_fetch_add(&sh->errors, 1);
    pthread_mutex_unlock(&sh->msg_lock);
}

/* Version v of document k has 1 + (v + k) % 9 chunks, each naming "v<v>". */
static void rw_text(char *buf, size_t cap, int k, int v, int *n_chunks)
{
    size_t o = 0;
    *n_chunks = 1 + (v + k) % 9;
    for (int i = 0; i < *n_chunks; i++)
        o += (size_t)snprintf(buf + o, cap - o, "doc%d ver%d part%d. ", k, v, i);
}

static int timed_put(struct rw_shared *sh, struct nr_store *s, struct tdoc *t)
{
    double t0 = now_s();
    int rc = tdoc_put(s, t, "m", NULL, NULL);
    long us = (long)((now_s() - t0) * 1e6);
    long prev = atomic_load(&sh->max_put_us);
    while (us > prev && !atomic_compare_exchange_weak(&sh->max_put_us, &prev, us))
        ;
    return rc;
}

static void *rw_writer(void *arg)
{
    struct rw_shared *sh = arg;
    struct nr_store *s = NULL;
    static char texts[2][RW_DOCS][1024];
    struct tdoc t;

    if (nr_store_open(sh->path, &s)) {
        rw_error(sh, "writer open %ld %ld: %s", 0, 0);
        return NULL;
    }
    for (int v = 1; v < 60 && !atomic_load(&sh->stop); v++) {
        for (int k = 0; k < RW_DOCS; k++) {
            char *text = texts[v & 1][k];
            char src[16];
            int n;
            rw_text(text, sizeof texts[0][0], k, v, &n);
            snprintf(src, sizeof src, "d%d", k);
            tdoc_make(&t, "rw", src, text, n, (uint32_t)v);
            /* chunk boundaries on the sentence ends so each chunk names its version */
            {
                const char *p = text;
                for (int i = 0; i < n; i++) {
                    const char *e = strstr(p, ". ") + 2;
                    t.c[i].start = p - text;
                    t.c[i].end = e - text;
                    p = e;
                }
            }
            if (timed_put(sh, s, &t) != NR_OK)
                rw_error(sh, "writer put v%ld k%ld: %s", v, k);
            atomic_fetch_add(&sh->writes, 1);
        }
    }
    nr_store_close(s);
    return NULL;
}

/* A second writer on other documents, so the writers contend for the lock. */
static void *rw_writer2(void *arg)
{
    struct rw_shared *sh = arg;
    struct nr_store *s = NULL;
    struct tdoc t;
    if (nr_store_open(sh->path, &s)) {
        rw_error(sh, "writer2 open %ld %ld: %s", 0, 0);
        return NULL;
    }
    for (int v = 0; v < 120 && !atomic_load(&sh->stop); v++) {
        char src[16];
        snprintf(src, sizeof src, "w2-%d", v % 7);
        tdoc_make(&t, "rw2", src, v % 2 ? text_a : corpus[v % 6][1], 1 + v % 4, (uint32_t)v);
        if (timed_put(sh, s, &t) != NR_OK)
            rw_error(sh, "writer2 put %ld %ld: %s", v, 0);
    }
    nr_store_close(s);
    return NULL;
}

static void *rw_reader(void *arg)
{
    struct rw_shared *sh = arg;
    struct nr_store *s = NULL;
    int64_t ids[RW_DOCS] = {0};

    if (nr_store_open(sh->path, &s)) {
        rw_error(sh, "reader open %ld %ld: %s", 0, 0);
        return NULL;
    }
    while (!atomic_load(&sh->stop)) {
        for (int k = 0; k < RW_DOCS; k++) {
            struct nr_store_doc *d = NULL;
            char src[16];
            int rc, v, want;
            snprintf(src, sizeof src, "d%d", k);
            if (!ids[k]) {
                rc = nr_store_has(s, "rw", src, NULL, NULL, &ids[k]);
                if (rc < 0)
                    rw_error(sh, "reader has %ld %ld: %s", k, rc);
                continue;
            }
            /* One snapshot: the row's chunk count must equal the chunks seen. */
            rc = nr_store_doc_get(s, ids[k], &d);
            if (rc != NR_OK) {
                rw_error(sh, "reader doc %ld: rc %ld: %s", k, rc);
                continue;
            }
            /* and the count must be the one of the version the hash belongs to */
            for (v = 1; v < 60; v++) {
                char text[1024], hash[NR_SHA256_HEX];
                rw_text(text, sizeof text, k, v, &want);
                nr_sha256_hex(text, strlen(text), hash);
                if (strcmp(hash, d->content_hash) == 0)
                    break;
            }
            if (v == 60 || d->n_chunks != want)
                rw_error(sh, "reader doc %ld: %ld chunks for its version: %s", k, d->n_chunks);
            nr_store_doc_free(d);
            atomic_fetch_add(&sh->reads, 1);
        }
        {
            /* BM25 during writes: never an error. */
            struct nr_store_hit hits[16];
            int n;
            if (nr_store_bm25(s, "part0", 16, NULL, hits, &n) != NR_OK)
                rw_error(sh, "reader bm25 %ld %ld: %s", 0, 0);
        }
    }
    nr_store_close(s);
    return NULL;
}

static void test_readers_see_whole_documents(void)
{
    struct rw_shared sh;
    pthread_t w, w2, r;
    double t0;

    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.msg_lock, NULL);
    remove_db(tpath("rw.db"));
    sh.path = tpath("rw.db");
    {
        struct nr_store *s = NULL;
        NR_CHECK_INT(nr_store_open(sh.path, &s), NR_OK);
        nr_store_close(s);
    }
    t0 = now_s();
    pthread_create(&r, NULL, rw_reader, &sh);
    pthread_create(&w, NULL, rw_writer, &sh);
    pthread_create(&w2, NULL, rw_writer2, &sh);
    pthread_join(w, NULL);
    pthread_join(w2, NULL);
    atomic_store(&sh.stop, 1);
    pthread_join(r, NULL);
    NR_CHECK_MSG(atomic_load(&sh.errors) == 0, "%d errors, first: %s", atomic_load(&sh.errors),
                 sh.msg);
    NR_CHECK_MSG(atomic_load(&sh.reads) > 20, "only %ld reads", atomic_load(&sh.reads));
    printf("  %ld document reads during %ld replaces + 120 puts by a second writer, %.1f s; "
           "slowest put %.1f ms\n",
           atomic_load(&sh.reads), atomic_load(&sh.writes), now_s() - t0,
           atomic_load(&sh.max_put_us) / 1000.0);
    {
        struct nr_store *s = NULL;
        NR_CHECK_INT(nr_store_open(sh.path, &s), NR_OK);
        NR_CHECK_INT(nr_store_check(s), NR_OK);
        nr_store_close(s);
    }
    pthread_mutex_destroy(&sh.msg_lock);
}

/* ---------------------------------------------------------------- allocation failures */

static void test_alloc_failure_in_put(void)
{
    const char *p = tpath("oom.db");
    struct nr_store *s = open_fresh("oom.db");
    struct tdoc t1, t2;
    struct counts before;
    int k, rc = -1, failures = 0;

    if (!s)
        return;
    tdoc_make(&t1, "docs", "seed", corpus[0][1], 2, 1);
    NR_CHECK_INT(tdoc_put(s, &t1, "m", NULL, NULL), NR_OK);
    before = count_all(p);

    /* A new document: each failure is clean and leaves nothing behind. */
    tdoc_make(&t1, "docs", "new", text_a, 6, 2);
    t1.d.metadata_json = "{\"a\": [1, 2, {\"b\": null}]}";
    for (k = 1; k < 5000; k++) {
        nr_mem_fail_after(k);
        rc = tdoc_put(s, &t1, "m", NULL, NULL);
        nr_mem_fail_after(0);
        if (rc == NR_OK)
            break;
        failures++;
        NR_CHECK_MSG(rc == NR_ENOMEM, "fail at %d: rc %d (%s)", k, rc, nr_err_msg());
        NR_CHECK_MSG(nr_err_msg()[0] != '\0', "fail at %d: no message", k);
        NR_CHECK_MSG(counts_eq(count_all(p), before), "fail at %d: partial document", k);
        if (k % 8 == 1)
            NR_CHECK_MSG(nr_store_check(s) == NR_OK, "fail at %d: %s", k, nr_err_msg());
    }
    NR_CHECK_INT(rc, NR_OK);
    NR_CHECK_INT(nr_store_has(s, "docs", "new", t1.hash, "m", NULL), 1);
    printf("  new document: %d injected failures, then success\n", failures);

    /* A replacement: each failure leaves the old version whole, and the full
     * check after each one (which commits a transaction on the same handle)
     * finds nothing wrong. */
    before = count_all(p);
    tdoc_make(&t2, "docs", "new", corpus[1][1], 3, 3);
    failures = 0;
    for (k = 1; k < 5000; k++) {
        nr_mem_fail_after(k);
        rc = tdoc_put(s, &t2, "m", NULL, NULL);
        nr_mem_fail_after(0);
        if (rc == NR_OK)
            break;
        failures++;
        NR_CHECK_MSG(rc == NR_ENOMEM, "fail at %d: rc %d (%s)", k, rc, nr_err_msg());
        NR_CHECK_MSG(nr_store_check(s) == NR_OK, "fail at %d: %s", k, nr_err_msg());
        NR_CHECK_MSG(nr_store_has(s, "docs", "new", t1.hash, "m", NULL) == 1,
                     "fail at %d: old version gone", k);
        NR_CHECK_MSG(counts_eq(count_all(p), before), "fail at %d: partial replace", k);
    }
    NR_CHECK_INT(rc, NR_OK);
    NR_CHECK_INT(nr_store_has(s, "docs", "new", t2.hash, "m", NULL), 1);
    printf("  replacement: %d injected failures, then success\n", failures);

    /* Reads and removal under failures: clean errors, then they work. */
    for (k = 1; k < 2000; k++) {
        struct nr_store_hit hits[8];
        struct nr_store_doc *d = NULL;
        int64_t id = 0;
        int n, rc2, rc3;
        nr_mem_fail_after(k);
        rc = nr_store_bm25(s, "zebra lion", 8, NULL, hits, &n);
        rc2 = nr_store_has(s, "docs", "new", NULL, NULL, &id);
        rc3 = rc2 == 1 ? nr_store_doc_get(s, id, &d) : NR_OK;
        nr_mem_fail_after(0);
        nr_store_doc_free(d);
        NR_CHECK_MSG(rc == NR_OK || rc == NR_ENOMEM, "bm25 fail at %d: %d", k, rc);
        NR_CHECK_MSG(rc2 == 1 || rc2 == NR_ENOMEM, "has fail at %d: %d", k, rc2);
        NR_CHECK_MSG(rc3 == NR_OK || rc3 == NR_ENOMEM, "doc get fail at %d: %d", k, rc3);
        if (rc == NR_OK && rc2 == 1 && rc3 == NR_OK)
            break;
    }
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);

    /* Opening, fresh and existing, under failures: every one of the first 300
     * allocations, then every 7th (creating a store takes ~3400, and each
     * attempt creates a file and syncs it: all of them take a minute on a
     * busy disk). */
    for (int existing = 0; existing < 2; existing++) {
        for (k = 1; k < 8000; k += k < 300 ? 1 : 7) {
            struct nr_store *s2 = NULL;
            if (!existing)
                remove_db(tpath("oom-open.db"));
            nr_mem_fail_after(k);
            rc = nr_store_open(existing ? p : tpath("oom-open.db"), &s2);
            nr_mem_fail_after(0);
            if (rc == NR_OK) {
                NR_CHECK_INT(nr_store_check(s2), NR_OK);
                nr_store_close(s2);
                break;
            }
            NR_CHECK_MSG(s2 == NULL, "open fail at %d left a handle", k);
            NR_CHECK_MSG(rc == NR_ENOMEM, "open fail at %d: rc %d (%s)", k, rc, nr_err_msg());
        }
        NR_CHECK_INT(rc, NR_OK);
    }
    /* A store whose creation was cut short by a failure opens fine later. */
    NR_CHECK_INT(nr_store_open(tpath("oom-open.db"), &s), NR_OK);
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);
}

/* ---------------------------------------------------------------- full disk */

static void make_big_text(char *buf, size_t n, int seed)
{
    for (size_t i = 0; i + 1 < n; i++)
        buf[i] = (i % 7 == 6) ? ' ' : (char)('a' + (i * 31 + (size_t)seed) % 26);
    buf[n - 1] = '\0';
}

static void test_size_limit_acts_like_a_full_disk(void)
{
    const char *p = tpath("full.db");
    struct nr_store *s = open_fresh("full.db");
    static char big[200000];
    struct tdoc t;
    struct counts before;
    int rc = NR_OK, i;

    if (!s)
        return;
    tdoc_make(&t, "docs", "small", text_a, 2, 1);
    NR_CHECK_INT(tdoc_put(s, &t, "m", NULL, NULL), NR_OK);
    NR_CHECK_INT(nr_store_set_size_limit(s, 600 << 10), NR_OK);
    for (i = 0; i < 20; i++) {
        char src[32];
        make_big_text(big, sizeof big, i);
        snprintf(src, sizeof src, "big%d", i);
        tdoc_make(&t, "docs", src, big, 16, (uint32_t)i);
        before = count_all(p);
        rc = tdoc_put(s, &t, "m", NULL, NULL);
        if (rc != NR_OK)
            break;
    }
    NR_CHECK_MSG(rc == NR_ELIMIT, "rc %d after %d puts: %s", rc, i, nr_err_msg());
    NR_CHECK_MSG(strstr(nr_err_msg(), "full") != NULL, "message: %s", nr_err_msg());
    NR_CHECK(counts_eq(count_all(p), before));
    NR_CHECK_INT(nr_store_has(s, "docs", t.d.source, NULL, NULL, NULL), 0);
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    /* Small reads and writes still work; lifting the limit lets the big one in. */
    NR_CHECK_INT(nr_store_has(s, "docs", "small", NULL, NULL, NULL), 1);
    NR_CHECK_INT(nr_store_set_size_limit(s, 0), NR_OK);
    NR_CHECK_INT(tdoc_put(s, &t, "m", NULL, NULL), NR_OK);
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);
}

/*
 * A real ENOSPC: a 1 MiB tmpfs mounted in a private mount namespace of a
 * child process (so nothing is left mounted whatever happens). Needs
 * CAP_SYS_ADMIN; skipped without it.
 */
static int disk_full_child(const char *dir)
{
    char db[600], filler[600];
    static char big[300000], chunk[4096];
    struct nr_store *s = NULL;
    struct tdoc t;
    int fd, rc, failed_before = nr_test_failed_checks;
    struct counts before;

    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=1m") != 0)
        return 77;
    snprintf(db, sizeof db, "%s/store.db", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    NR_CHECK_INT(nr_store_open(db, &s), NR_OK);
    if (!s)
        return 1;
    tdoc_make(&t, "docs", "small", text_a, 2, 1);
    NR_CHECK_INT(tdoc_put(s, &t, "m", NULL, NULL), NR_OK);
    /* Fill the file system to the last byte. */
    fd = open(filler, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    NR_CHECK(fd >= 0);
    memset(chunk, 'f', sizeof chunk);
    for (;;) {
        ssize_t w = write(fd, chunk, sizeof chunk);
        if (w <= 0)
            break;
    }
    for (;;) { /* the tail, byte by byte */
        if (write(fd, chunk, 1) != 1)
            break;
    }
    NR_CHECK_INT(errno, ENOSPC);
    close(fd);

    make_big_text(big, sizeof big, 3);
    tdoc_make(&t, "docs", "big", big, 20, 2);
    before = count_all(db);
    rc = tdoc_put(s, &t, "m", NULL, NULL);
    NR_CHECK_MSG(rc == NR_ELIMIT || rc == NR_EIO, "put on a full disk: rc %d (%s)", rc,
                 nr_err_msg());
    printf("  full disk: %s\n", nr_err_msg());
    NR_CHECK(counts_eq(count_all(db), before));
    NR_CHECK_INT(nr_store_has(s, "docs", "big", NULL, NULL, NULL), 0);
    NR_CHECK_INT(nr_store_has(s, "docs", "small", NULL, NULL, NULL), 1);
    NR_CHECK_INT(nr_store_check(s), NR_OK);

    /* Space comes back: the same handle works again. */
    unlink(filler);
    NR_CHECK_INT(tdoc_put(s, &t, "m", NULL, NULL), NR_OK);
    NR_CHECK_INT(nr_store_has(s, "docs", "big", t.hash, "m", NULL), 1);
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);
    NR_CHECK_INT(nr_store_open(db, &s), NR_OK);
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);
    umount(dir);
    return nr_test_failed_checks != failed_before;
}

static void test_disk_full_on_tmpfs(void)
{
    const char *dir = tpath("tmpfs");
    pid_t pid;
    int status = 0;

    mkdir(dir, 0755);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        int code = disk_full_child(dir);
        fflush(stdout);
        _exit(code);
    }
    NR_CHECK(pid > 0);
    if (pid <= 0)
        return;
    waitpid(pid, &status, 0);
    rmdir(dir);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        NR_SKIP("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)");
        return;
    }
    NR_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "disk-full child: status 0x%x",
                 status);
}

/* ---------------------------------------------------------------- the checker finds damage */

static void test_check_finds_damage(void)
{
    const char *p = tpath("damage.db");
    struct nr_store *s = open_fresh("damage.db");
    struct nr_store_doc *d = NULL;
    struct tdoc t;
    sqlite3 *db;
    int64_t id = 0;

    if (!s)
        return;
    tdoc_make(&t, "docs", "a", text_a, 4, 1);
    NR_CHECK_INT(tdoc_put(s, &t, "m", &id, NULL), NR_OK);
    NR_CHECK_INT(nr_store_check(s), NR_OK);

    /* An FTS entry dropped behind the store's back. */
    db = raw_open(p);
    NR_CHECK_INT(sqlite3_exec(db,
                              "INSERT INTO chunks_fts(chunks_fts, rowid, text)"
                              " SELECT 'delete', id, text FROM chunks ORDER BY id LIMIT 1",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    NR_CHECK_INT(nr_store_check(s), NR_EFORMAT);
    printf("  found: %s\n", nr_err_msg());
    NR_CHECK_INT(
        sqlite3_exec(db, "INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')", NULL, NULL, NULL),
        SQLITE_OK);
    NR_CHECK_INT(nr_store_check(s), NR_OK);

    /* A chunk count that lies. */
    NR_CHECK_INT(sqlite3_exec(db, "UPDATE documents SET n_chunks = n_chunks + 1", NULL, NULL, NULL),
                 SQLITE_OK);
    NR_CHECK_INT(nr_store_check(s), NR_EFORMAT);
    printf("  found: %s\n", nr_err_msg());
    NR_CHECK_INT(nr_store_doc_get(s, id, &d), NR_EFORMAT);
    NR_CHECK(d == NULL);
    NR_CHECK_INT(sqlite3_exec(db, "UPDATE documents SET n_chunks = n_chunks - 1", NULL, NULL, NULL),
                 SQLITE_OK);

    /* A missing vector. */
    NR_CHECK_INT(sqlite3_exec(db,
                              "DELETE FROM vectors WHERE rowid = (SELECT max(chunk_id) FROM"
                              " vectors)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    NR_CHECK_INT(nr_store_check(s), NR_EFORMAT);
    printf("  found: %s\n", nr_err_msg());
    sqlite3_close(db);

    /* The schema itself refuses chunk updates and out-of-range chunks. */
    db = raw_open(p);
    NR_CHECK(sqlite3_exec(db, "UPDATE chunks SET text = 'x'", NULL, NULL, NULL) != SQLITE_OK);
    NR_CHECK(sqlite3_exec(db,
                          "INSERT INTO chunks(document_id, ordinal, byte_start, byte_end, n_tokens,"
                          " text) SELECT id, 99, 0, text_bytes + 1, 0, text || 'x' FROM documents",
                          NULL, NULL, NULL) != SQLITE_OK);
    sqlite3_close(db);
    nr_store_close(s);
}

/* ---------------------------------------------------------------- final integrity */

static void test_integrity_of_every_test_store(void)
{
    static const char *names[] = {"rt.db",   "same.db", "replace.db", "remove.db",
                                  "bad.db",  "bm25.db", "inject.db",  "filters.db",
                                  "rw.db",   "oom.db",  "full.db",    "emptydoc.db",
                                  "open.db", "stop.db", "race0.db",   "oom-open.db"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct nr_store *s = NULL;
        int rc = nr_store_open(tpath(names[i]), &s);
        NR_CHECK_MSG(rc == NR_OK, "%s: %s", names[i], nr_err_msg());
        if (rc)
            continue;
        rc = nr_store_check(s);
        NR_CHECK_MSG(rc == NR_OK, "%s: %s", names[i], nr_err_msg());
        nr_store_close(s);
        {
            sqlite3 *db = raw_open(tpath(names[i]));
            sqlite3_stmt *st = NULL;
            sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
            NR_CHECK_MSG(sqlite3_step(st) == SQLITE_ROW &&
                             strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0,
                         "%s: integrity_check", names[i]);
            sqlite3_finalize(st);
            sqlite3_close(db);
        }
    }
}

/* ---------------------------------------------------------------- SQLite memory through nr_malloc
 */

#define SQ_HDR 16 /* keeps SQLite's blocks 16-byte aligned */

static void *sq_malloc(int n)
{
    unsigned char *p;
    if (n < 0)
        return NULL;
    p = nr_malloc((size_t)n + SQ_HDR);
    if (!p)
        return NULL;
    memcpy(p, &(size_t){(size_t)n}, sizeof(size_t));
    return p + SQ_HDR;
}

static void sq_free(void *p)
{
    if (p)
        nr_free((unsigned char *)p - SQ_HDR);
}

static int sq_size(void *p)
{
    size_t n;
    if (!p)
        return 0;
    memcpy(&n, (unsigned char *)p - SQ_HDR, sizeof n);
    return (int)n;
}

static void *sq_realloc(void *p, int n)
{
    void *q = sq_malloc(n);
    int old = sq_size(p);
    if (!q)
        return NULL;
    if (p)
        memcpy(q, p, (size_t)(old < n ? old : n));
    sq_free(p);
    return q;
}

static int sq_roundup(int n)
{
    return (n + 7) & ~7;
}

static int sq_init(void *x)
{
    return SQLITE_OK;
}

static void sq_shutdown(void *x) {}

int main(void)
{
    static const sqlite3_mem_methods methods = {sq_malloc,  sq_free, sq_realloc,  sq_size,
                                                sq_roundup, sq_init, sq_shutdown, NULL};
    const char *base = getenv("TMPDIR");
    char cmd[600];

    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &methods) != SQLITE_OK) {
        printf("cannot route SQLite allocations\n");
        return 1;
    }
    snprintf(tmp_dir, sizeof tmp_dir, "%s/nr_store_test_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        printf("cannot make a temporary directory\n");
        return 1;
    }

    NR_RUN(test_sha256_known_vectors);
    NR_RUN(test_sha256_streaming_matches_one_shot);
    NR_RUN(test_open_creates_and_reopens);
    NR_RUN(test_open_refuses_newer_schema);
    NR_RUN(test_open_refuses_foreign_files);
    NR_RUN(test_open_race_on_fresh_file);
    NR_RUN(test_put_get_roundtrip);
    NR_RUN(test_foreach_stops_on_callback);
    NR_RUN(test_put_unchanged_is_a_noop);
    NR_RUN(test_replace_is_atomic_and_leaves_no_orphans);
    NR_RUN(test_remove_removes_everything);
    NR_RUN(test_empty_document);
    NR_RUN(test_put_rejects_bad_input_and_writes_nothing);
    NR_RUN(test_bm25_ranking);
    NR_RUN(test_bm25_user_syntax_is_plain_words);
    NR_RUN(test_bm25_filters);
    NR_RUN(test_readers_see_whole_documents);
    NR_RUN(test_alloc_failure_in_put);
    NR_RUN(test_size_limit_acts_like_a_full_disk);
    NR_RUN(test_disk_full_on_tmpfs);
    NR_RUN(test_check_finds_damage);
    NR_RUN(test_integrity_of_every_test_store);

    if (!getenv("NR_KEEP_TMP")) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
        if (system(cmd) != 0)
            printf("could not remove %s\n", tmp_dir);
    }
    return nr_test_summary();
}

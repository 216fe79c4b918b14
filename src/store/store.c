/*
 * nr_store: the durable document store, on SQLite (WAL) with FTS5.
 *
 * ---------------------------------------------------------------- schema (version 1)
 *
 *   collections(id PK AUTOINCREMENT, name UNIQUE, created_at)
 *   documents(id PK AUTOINCREMENT, collection_id -> collections, source,
 *             title?, media_type?, content_hash (64 hex), metadata? (JSON object),
 *             text, text_bytes, n_chunks, created_at, updated_at,
 *             UNIQUE(collection_id, source))
 *   chunks(id PK AUTOINCREMENT, document_id -> documents ON DELETE CASCADE,
 *          ordinal, byte_start, byte_end, page?, n_tokens, heading?, text,
 *          UNIQUE(document_id, ordinal))
 *   vectors(chunk_id PK -> chunks ON DELETE CASCADE, model_id, dim,
 *           blob = dim float32 little-endian)
 *   chunks_fts: FTS5 over chunks.text, external content (content='chunks'),
 *               tokenize 'unicode61 remove_diacritics 2'
 *
 * Times are unix milliseconds. Offsets are bytes into documents.text (UTF-8).
 * The columns are named byte_start/byte_end rather than start/end because
 * END is an SQL keyword and because the name then says the unit.
 * `text_bytes` caches the byte length of the text (length() counts
 * characters), so the chunk range check is cheap.
 *
 * ---------------------------------------------------------------- invariants
 *
 *  I1 documents.n_chunks == the number of chunks of the document, and their
 *     ordinals are 0 .. n_chunks-1.
 *  I2 0 <= byte_start <= byte_end <= text_bytes, and chunks.text is exactly
 *     the bytes text[byte_start, byte_end) of its document.
 *  I3 every chunk has exactly one vector (length 4*dim) and one FTS entry;
 *     all vectors of a document have the same model and dim.
 *  I4 ids are never reused (AUTOINCREMENT): the in-memory vector index may
 *     hold ids of removed chunks for a moment, never ids of other chunks.
 *
 * I1-I3 hold at every commit because each document is written, replaced and
 * removed in one transaction (put: row + chunks + vectors + FTS, or nothing).
 * The schema backs them up where it is cheap: CHECK constraints (hash
 * length, text_bytes, chunk text length, blob length), a trigger refusing a
 * chunk range past the text, a trigger refusing a text change while chunks
 * exist, and chunks are immutable (UPDATE refused). nr_store_check verifies
 * all of them.
 *
 * ---------------------------------------------------------------- FTS5: why external content
 *
 * Contentless tables with delete support need SQLite 3.43 (we have 3.40);
 * a plain FTS5 table would keep a second copy of every chunk's text. An
 * external-content table indexes chunks.text and keeps no copy. Its hazard is
 * an index that drifts from the content table, since deleting an entry needs
 * the exact text that was indexed. Triggers on chunks keep the two in step
 * inside the same statement (so inside the same transaction), and chunks
 * are never updated, only inserted and deleted, so the text handed to the
 * 'delete' command is always the indexed text. FTS5's 'integrity-check' in
 * 3.40 does not compare an external-content index with its content, so
 * nr_store_check re-indexes the chunks into a temporary table and compares
 * the two posting by posting.
 *
 * ---------------------------------------------------------------- SQLite settings
 *
 * journal_mode=WAL: readers never block the writer and see a snapshot;
 * a commit is one append to the WAL.
 * synchronous=FULL: the WAL is fsynced at every commit. With NORMAL a
 * process kill cannot lose a commit either, but a power loss or OS crash can
 * lose the last ones; we acknowledge a put to the caller (and through it to
 * a user) only after the commit, so an acknowledged document must survive
 * power loss: FULL.
 * foreign_keys=ON (cascades chunks -> vectors), busy_timeout 5 s, defensive
 * mode (no writes to the schema or FTS shadow tables through SQL), no
 * double-quoted string literals,
 * journal_size_limit 64 MiB (a WAL that grew during a big ingest is
 * truncated after checkpoints). trusted_schema stays ON: SQLite 3.40 does
 * not mark FTS5 (nor json_valid) as safe for use in the schema, and the
 * triggers that keep the FTS index in step are worth more here than
 * protection against a crafted database file: the file is the operator's
 * own data file, never one supplied by a client, and we register no SQL
 * functions of our own.
 * Writes start with BEGIN IMMEDIATE, so a writer never has to upgrade a read
 * lock (which could fail with SQLITE_BUSY_SNAPSHOT). Every operation runs in
 * run_txn(): on SQLITE_BUSY or SQLITE_LOCKED the transaction is rolled back
 * and retried, up to NR_STORE_TRIES times (each already waiting up to the
 * busy timeout), so BUSY reaches a caller only after ~30 s of a stuck writer,
 * and then as NR_EIO "database is locked".
 * Multi-statement reads run inside BEGIN ... COMMIT: one WAL snapshot.
 * After a failed operation (anything but BUSY, which is retried, and
 * not-found) the handle drops its SQLite connection and opens a new one on
 * its next call. SQLite rolls the transaction back, but an allocation
 * failure inside FTS5 can leave per-connection state behind that the next
 * commit on that connection writes into the index (found by the
 * allocation-failure test: the index then reads as corrupt). A new
 * connection carries nothing over; failures are rare, so the cost (a few
 * ms) does not matter.
 *
 * ---------------------------------------------------------------- migrations
 *
 * PRAGMA user_version is the schema version; migrations[i] takes the schema
 * from version i to i+1 and runs in its own BEGIN IMMEDIATE transaction
 * together with the user_version bump, after re-reading the version inside
 * the transaction (two processes may open a fresh file at once). A file with
 * a newer version is refused (NR_EUNSUPPORTED) before anything is written.
 * A file with version 0 is migrated only if it has no tables at all (an
 * empty or new file), so we never write our schema into someone else's
 * database; application_id marks our files.
 *
 * Statements are prepared once per handle (lazily, SQLITE_PREPARE_PERSISTENT)
 * and always reset and unbound after use, so no statement keeps a read
 * transaction open or points at a caller's buffer. No SQL is built from user
 * data: all values are bound (the only formatted SQL is PRAGMA statements
 * with our own integers).
 */
#include "nr_store.h"

#include "nr_err.h"
#include "nr_mem.h"
#include "nr_sha256.h"

#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#define NR_STORE_APP_ID    0x6e726167 /* "nrag" */
#define NR_STORE_BUSY_MS   5000       /* sqlite busy handler wait per attempt */
#define NR_STORE_TRIES     6          /* attempts of a transaction that hit BUSY */
#define NR_STORE_META_KEY  128        /* metadata filter key bytes */
#define NR_STORE_WAL_LIMIT (64 << 20) /* journal_size_limit */

/* ---------------------------------------------------------------- schema */

static const char *const migrations[] = {
    /* 0 -> 1: the initial schema. */
    "CREATE TABLE collections ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE documents ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  collection_id INTEGER NOT NULL REFERENCES collections(id),"
    "  source TEXT NOT NULL,"
    "  title TEXT,"
    "  media_type TEXT,"
    "  content_hash TEXT NOT NULL CHECK (length(content_hash) = 64),"
    "  metadata TEXT CHECK (metadata IS NULL OR json_valid(metadata)),"
    "  text TEXT NOT NULL,"
    "  text_bytes INTEGER NOT NULL CHECK (text_bytes = length(CAST(text AS BLOB))),"
    "  n_chunks INTEGER NOT NULL CHECK (n_chunks >= 0),"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  UNIQUE (collection_id, source)"
    ") STRICT;"
    "CREATE TABLE chunks ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
    "  ordinal INTEGER NOT NULL CHECK (ordinal >= 0),"
    "  byte_start INTEGER NOT NULL CHECK (byte_start >= 0),"
    "  byte_end INTEGER NOT NULL CHECK (byte_end >= byte_start),"
    "  page INTEGER CHECK (page IS NULL OR page >= 1),"
    "  n_tokens INTEGER NOT NULL CHECK (n_tokens >= 0),"
    "  heading TEXT,"
    "  text TEXT NOT NULL CHECK (length(CAST(text AS BLOB)) = byte_end - byte_start),"
    "  UNIQUE (document_id, ordinal)"
    ") STRICT;"
    "CREATE TABLE vectors ("
    "  chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,"
    "  model_id TEXT NOT NULL,"
    "  dim INTEGER NOT NULL CHECK (dim > 0),"
    "  blob BLOB NOT NULL CHECK (length(blob) = 4 * dim)"
    ") STRICT;"
    "CREATE INDEX vectors_by_model ON vectors(model_id);"
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content = 'chunks',"
    "  content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2');"
    "CREATE TRIGGER chunks_in_range BEFORE INSERT ON chunks"
    "  WHEN new.byte_end > (SELECT text_bytes FROM documents WHERE id = new.document_id)"
    "  BEGIN SELECT RAISE(ABORT, 'chunk range outside the document text'); END;"
    "CREATE TRIGGER chunks_immutable BEFORE UPDATE ON chunks"
    "  BEGIN SELECT RAISE(ABORT, 'chunks are immutable'); END;"
    "CREATE TRIGGER documents_text_guard BEFORE UPDATE OF text ON documents"
    "  WHEN EXISTS (SELECT 1 FROM chunks WHERE document_id = old.id)"
    "  BEGIN SELECT RAISE(ABORT, 'document text changed while it has chunks'); END;"
    "CREATE TRIGGER chunks_fts_add AFTER INSERT ON chunks"
    "  BEGIN INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;"
    "CREATE TRIGGER chunks_fts_del AFTER DELETE ON chunks"
    "  BEGIN INSERT INTO chunks_fts(chunks_fts, rowid, text)"
    "        VALUES ('delete', old.id, old.text); END;",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == NR_STORE_SCHEMA_VERSION,
               "one migration per schema version");

/* ---------------------------------------------------------------- statements */

#define DOC_COLUMNS                                                                                \
    "d.id, d.collection_id, col.name, d.source, d.title, d.media_type, d.metadata,"                \
    " d.content_hash, d.n_chunks, d.text_bytes, d.created_at, d.updated_at"

enum {
    ST_BEGIN,
    ST_BEGIN_WRITE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_COLL_GET,
    ST_COLL_ADD,
    ST_DOC_FIND,
    ST_DOC_ADD,
    ST_DOC_UPDATE,
    ST_DOC_DEL,
    ST_CHUNKS_DEL,
    ST_CHUNK_ADD,
    ST_VEC_ADD,
    ST_DOC_GET,
    ST_DOC_CHUNK_IDS,
    ST_DOC_LIST,
    ST_DOC_TEXT,
    ST_CHUNK_GET,
    ST_COLL_LIST,
    ST_BM25,
    ST_VEC_EACH,
    ST_VEC_DOC,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_COLL_GET] = "SELECT id FROM collections WHERE name = ?1",
    [ST_COLL_ADD] = "INSERT INTO collections(name, created_at) VALUES (?1, ?2)",
    /* The model of a document is that of its first chunk's vector (I3). */
    [ST_DOC_FIND] = "SELECT d.id, d.content_hash, d.n_chunks,"
                    " (SELECT v.model_id FROM chunks c JOIN vectors v ON v.chunk_id = c.id"
                    "   WHERE c.document_id = d.id ORDER BY c.ordinal LIMIT 1)"
                    " FROM documents d JOIN collections col ON col.id = d.collection_id"
                    " WHERE col.name = ?1 AND d.source = ?2",
    [ST_DOC_ADD] = "INSERT INTO documents(collection_id, source, title, media_type, content_hash,"
                   " metadata, text, text_bytes, n_chunks, created_at, updated_at)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    [ST_DOC_UPDATE] = "UPDATE documents SET title = ?2, media_type = ?3, content_hash = ?4,"
                      " metadata = ?5, text = ?6, text_bytes = ?7, n_chunks = ?8,"
                      " updated_at = ?9 WHERE id = ?1",
    [ST_DOC_DEL] = "DELETE FROM documents WHERE id = ?1",
    [ST_CHUNKS_DEL] = "DELETE FROM chunks WHERE document_id = ?1",
    [ST_CHUNK_ADD] = "INSERT INTO chunks(document_id, ordinal, byte_start, byte_end, page,"
                     " n_tokens, heading, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_VEC_ADD] = "INSERT INTO vectors(chunk_id, model_id, dim, blob) VALUES (?1, ?2, ?3, ?4)",
    [ST_DOC_GET] = "SELECT " DOC_COLUMNS " FROM documents d"
                   " JOIN collections col ON col.id = d.collection_id WHERE d.id = ?1",
    [ST_DOC_CHUNK_IDS] = "SELECT id FROM chunks WHERE document_id = ?1 ORDER BY ordinal",
    [ST_DOC_LIST] = "SELECT " DOC_COLUMNS " FROM documents d"
                    " JOIN collections col ON col.id = d.collection_id"
                    " WHERE d.id > ?1 AND (?2 IS NULL OR col.name = ?2) ORDER BY d.id LIMIT ?3",
    [ST_DOC_TEXT] = "SELECT text, text_bytes FROM documents WHERE id = ?1",
    [ST_CHUNK_GET] = "SELECT c.id, c.document_id, d.collection_id, c.ordinal, c.byte_start,"
                     " c.byte_end, c.page, c.n_tokens, c.heading, c.text, d.source, d.title"
                     " FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?1",
    [ST_COLL_LIST] = "SELECT col.id, col.name, col.created_at, count(d.id),"
                     " coalesce(sum(d.n_chunks), 0) FROM collections col"
                     " LEFT JOIN documents d ON d.collection_id = col.id"
                     " GROUP BY col.id ORDER BY col.name",
    /* ?1 a query built by fts_query(), never user syntax. Strings compare as
     * text, other JSON values by their JSON text (see nr_store_filter). */
    [ST_BM25] = "SELECT c.id, c.document_id, -bm25(chunks_fts) FROM chunks_fts"
                " JOIN chunks c ON c.id = chunks_fts.rowid"
                " JOIN documents d ON d.id = c.document_id"
                " WHERE chunks_fts MATCH ?1"
                " AND (?2 IS NULL OR d.collection_id ="
                "      (SELECT id FROM collections WHERE name = ?2))"
                " AND (?3 IS NULL OR d.id = ?3)"
                " AND (?4 IS NULL OR (CASE json_type(d.metadata, ?4)"
                "      WHEN 'text' THEN d.metadata ->> ?4 ELSE d.metadata -> ?4 END) = ?5)"
                " ORDER BY bm25(chunks_fts), c.id LIMIT ?6",
    [ST_VEC_EACH] = "SELECT v.chunk_id, c.document_id, d.collection_id, v.dim, v.blob"
                    " FROM vectors v JOIN chunks c ON c.id = v.chunk_id"
                    " JOIN documents d ON d.id = c.document_id"
                    " WHERE v.model_id = ?1 ORDER BY v.chunk_id",
    /* chunks' (document_id, ordinal) index finds the document's rows */
    [ST_VEC_DOC] = "SELECT v.chunk_id, c.document_id, d.collection_id, v.dim, v.blob"
                   " FROM chunks c JOIN vectors v ON v.chunk_id = c.id"
                   " JOIN documents d ON d.id = c.document_id"
                   " WHERE c.document_id = ?2 AND v.model_id = ?1 ORDER BY v.chunk_id",
};

struct nr_store {
    char *path;                 /* the file, for reconnecting (never put in messages) */
    sqlite3 *db;                /* NULL after a failed transaction, until the next call */
    sqlite3_stmt *st[ST_COUNT]; /* prepared on first use; all NULL when db is */
    int busy;                   /* the current attempt hit SQLITE_BUSY / LOCKED */
    int no_retry;               /* the current attempt has had effects outside the db */
    float *vbuf;                /* (vbuf_cap) scratch for one vector */
    size_t vbuf_cap;            /* floats */
    int64_t max_pages_default;  /* SQLite's max_page_count on a new connection */
    int64_t max_pages;          /* nr_store_set_size_limit's, 0: none */
};

static int db_connect(struct nr_store *s, int64_t *version);
static void db_disconnect(struct nr_store *s);

/* ---------------------------------------------------------------- errors */

/* Turn a SQLite result code into a status with a message naming `what`. */
static int db_fail(struct nr_store *s, int rc, const char *what)
{
    int prim = rc & 0xff;
    int code;
    const char *msg;

    /* errmsg belongs to the last call on the connection; use it only if it
     * is about this failure. */
    msg = (s && s->db && sqlite3_extended_errcode(s->db) == rc) ? sqlite3_errmsg(s->db)
                                                                : sqlite3_errstr(rc);
    switch (prim) {
    case SQLITE_NOMEM:
        code = NR_ENOMEM;
        break;
    case SQLITE_FULL:
    case SQLITE_TOOBIG:
        code = NR_ELIMIT;
        break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT:
        code = NR_EFORMAT;
        break;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
        code = NR_EINVAL;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        if (s)
            s->busy = 1;
        code = NR_EIO;
        break;
    case SQLITE_IOERR:
        code = rc == SQLITE_IOERR_NOMEM ? NR_ENOMEM : NR_EIO;
        break;
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL:
        code = NR_EIO;
        break;
    default:
        code = NR_EINTERNAL;
        break;
    }
    return nr_err_set(code, "store: %s: %s", what, msg);
}

/* ---------------------------------------------------------------- statement helpers */

static int stmt(struct nr_store *s, int id, sqlite3_stmt **out)
{
    if (!s->st[id]) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->st[id],
                                    NULL);
        if (rc != SQLITE_OK) {
            s->st[id] = NULL;
            return db_fail(s, rc, "preparing a statement");
        }
    }
    *out = s->st[id];
    return NR_OK;
}

/* Reset and unbind: no open cursor, no pointer into a caller's buffer. */
static void stmt_done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Run a statement that returns no rows; reset it either way. */
static int step_done(struct nr_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? NR_OK : db_fail(s, rc, what);
    stmt_done(st);
    return ret;
}

/* Step a query: 1 with a row, 0 when done, < 0 on error (statement reset). */
static int step_row(struct nr_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    rc = db_fail(s, rc, what);
    stmt_done(st);
    return rc;
}

/* Copy a text column (NULL stays NULL). */
static int col_strdup(sqlite3_stmt *st, int i, char **out)
{
    const unsigned char *t;
    *out = NULL;
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return NR_OK;
    t = sqlite3_column_text(st, i);
    if (!t)
        return nr_err_set(NR_ENOMEM, "store: out of memory reading a column");
    *out = nr_strndup((const char *)t, (size_t)sqlite3_column_bytes(st, i));
    return *out ? NR_OK : nr_err_set(NR_ENOMEM, "store: out of memory copying a column");
}

/* Run a one-row, one-integer statement such as a PRAGMA. */
static int query_int(struct nr_store *s, const char *sql, const char *what, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(s, rc, what);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = NR_OK;
    } else if (rc == SQLITE_DONE) {
        rc = nr_err_set(NR_EINTERNAL, "store: %s: no result", what);
    } else {
        rc = db_fail(s, rc, what);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---------------------------------------------------------------- transactions */

typedef int (*txn_body)(struct nr_store *s, void *arg);

static void txn_rollback(struct nr_store *s)
{
    sqlite3_stmt *st = NULL;
    /* SQLite may have rolled back by itself (after SQLITE_FULL, NOMEM, ...). */
    if (sqlite3_get_autocommit(s->db))
        return;
    if (stmt(s, ST_ROLLBACK, &st) == NR_OK) {
        sqlite3_step(st);
        stmt_done(st);
    }
    if (!sqlite3_get_autocommit(s->db)) {
        /* Could not even prepare ROLLBACK (no memory): the plain interface
         * needs no statement object of ours. */
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

static void backoff(int attempt)
{
    long ms = 10L << (attempt < 4 ? attempt : 4); /* 10, 20, 40, 80, 160 ms */
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Run body inside a read (BEGIN) or write (BEGIN IMMEDIATE) transaction and
 * commit; on failure roll back. An attempt that hit BUSY/LOCKED is retried
 * from the start unless the body marked side effects (s->no_retry).
 */
static int run_txn(struct nr_store *s, int write, const char *what, txn_body body, void *arg)
{
    int rc = NR_OK;
    if (!s->db && (rc = db_connect(s, NULL)))
        return rc;
    for (int attempt = 0;; attempt++) {
        sqlite3_stmt *st = NULL;
        s->busy = 0;
        s->no_retry = 0;
        txn_rollback(s); /* never start inside a transaction a failure left open */
        rc = stmt(s, write ? ST_BEGIN_WRITE : ST_BEGIN, &st);
        if (rc == NR_OK)
            rc = step_done(s, st, what);
        if (rc == NR_OK)
            rc = body(s, arg);
        if (rc == NR_OK && (rc = stmt(s, ST_COMMIT, &st)) == NR_OK)
            rc = step_done(s, st, what);
        if (rc == NR_OK)
            return NR_OK;
        txn_rollback(s);
        if (!s->busy || s->no_retry) {
            /* Not-found is an answer, not a failure. After any other
             * failure the connection is dropped (reopened by the next
             * call): SQLite and FTS5 do roll the transaction back, but a
             * failure in the middle of it (an allocation, I/O) can leave
             * per-connection caches behind that a later commit on the same
             * connection would write out. A fresh connection has none.
             * (test_store's allocation-failure test found this.) */
            if (rc != NR_ENOTFOUND)
                db_disconnect(s);
            return rc;
        }
        if (attempt + 1 >= NR_STORE_TRIES)
            return nr_err_set(NR_EIO,
                              "store: %s: database is locked (another writer held it "
                              "for more than %d s)",
                              what, NR_STORE_TRIES * NR_STORE_BUSY_MS / 1000);
        backoff(attempt);
    }
}

/* ---------------------------------------------------------------- input checks */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF) and no NUL. */
static int utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        uint32_t cp;
        if (c >= 0x01 && c < 0x80) {
            i++;
            continue;
        }
        if (c == 0)
            return 0;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

/* A NUL-terminated UTF-8 string of at most max bytes. A required one
 * (optional == 0) must be there and not empty; an optional one may be NULL
 * or empty. */
static int check_str(const char *v, size_t max, int optional, const char *what)
{
    size_t n;
    if (!v)
        return optional ? NR_OK : nr_err_set(NR_EINVAL, "store: %s is missing", what);
    n = strnlen(v, max + 1);
    if (n > max)
        return nr_err_set(NR_ELIMIT, "store: %s is longer than %zu bytes", what, max);
    if (n == 0 && !optional)
        return nr_err_set(NR_EINVAL, "store: %s is empty", what);
    if (!utf8_ok((const unsigned char *)v, n))
        return nr_err_set(NR_EINVAL, "store: %s is not valid UTF-8", what);
    return NR_OK;
}

static int check_collection(const char *name)
{
    size_t n;
    if (!name)
        return nr_err_set(NR_EINVAL, "store: collection name is missing");
    n = strnlen(name, NR_STORE_MAX_NAME + 1);
    if (n == 0 || n > NR_STORE_MAX_NAME)
        return nr_err_set(NR_EINVAL, "store: collection name must be 1..%d bytes",
                          NR_STORE_MAX_NAME);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
            return nr_err_set(NR_EINVAL,
                              "store: collection name must match [A-Za-z0-9][A-Za-z0-9_.-]*");
    }
    return NR_OK;
}

static int check_hash(const char *h)
{
    size_t n = strnlen(h, 65);
    if (n != 64)
        return nr_err_set(NR_EINVAL, "store: content hash must be 64 hex digits");
    for (size_t i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return nr_err_set(NR_EINVAL, "store: content hash must be lowercase hex");
    return NR_OK;
}

static int check_model(const char *m)
{
    int rc = check_str(m, NR_STORE_MAX_SHORT, 0, "model id");
    if (rc)
        return rc;
    for (const char *p = m; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return nr_err_set(NR_EINVAL, "store: model id has a control character");
    return NR_OK;
}

/* The metadata must be a JSON object with unique keys; it is stored as given. */
static int check_metadata(const char *m)
{
    json_error_t e;
    json_t *j;
    size_t n;
    int is_obj;

    if (!m)
        return NR_OK;
    n = strnlen(m, NR_STORE_MAX_METADATA + 1);
    if (n > NR_STORE_MAX_METADATA)
        return nr_err_set(NR_ELIMIT, "store: metadata is longer than %d bytes",
                          NR_STORE_MAX_METADATA);
    j = json_loadb(m, n, JSON_REJECT_DUPLICATES, &e);
    if (!j)
        return nr_err_set(NR_EINVAL, "store: metadata is not valid JSON: %s (line %d, column %d)",
                          e.text, e.line, e.column);
    is_obj = json_is_object(j);
    json_decref(j);
    return is_obj ? NR_OK : nr_err_set(NR_EINVAL, "store: metadata must be a JSON object");
}

/* ---------------------------------------------------------------- open / close */

static int exec_sql(struct nr_store *s, const char *sql, const char *what)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? NR_OK : db_fail(s, rc, what);
}

/* journal_mode=WAL answers with the mode in force; it needs a brief lock, so retry BUSY. */
static int set_wal(struct nr_store *s)
{
    for (int attempt = 0;; attempt++) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(st, 0);
            int ok = mode && sqlite3_stricmp(mode, "wal") == 0;
            sqlite3_finalize(st);
            return ok ? NR_OK
                      : nr_err_set(NR_EIO, "store: open: the file system does not allow WAL mode");
        }
        sqlite3_finalize(st);
        s->busy = 0;
        rc = db_fail(s, rc, "open: setting WAL mode");
        if (!s->busy || attempt + 1 >= NR_STORE_TRIES)
            return rc;
        backoff(attempt);
    }
}

struct migrate_ctx {
    int step_done; /* the version this transaction found, or -1 */
};

static int migrate_body(struct nr_store *s, void *arg)
{
    struct migrate_ctx *m = arg;
    int64_t v, n_tables;
    char sql[64];
    int rc;

    m->step_done = -1;
    if ((rc = query_int(s, "PRAGMA user_version", "open: reading the schema version", &v)))
        return rc;
    if (v > NR_STORE_SCHEMA_VERSION || v < 0)
        return nr_err_set(NR_EUNSUPPORTED,
                          "store: open: the store has schema version %lld, newer than this "
                          "build supports (%d): use a newer nanorag",
                          (long long)v, NR_STORE_SCHEMA_VERSION);
    if (v == NR_STORE_SCHEMA_VERSION) {
        m->step_done = (int)v; /* someone else finished the job */
        return NR_OK;
    }
    if (v == 0) {
        rc = query_int(s, "SELECT count(*) FROM sqlite_schema", "open: reading the schema",
                       &n_tables);
        if (rc)
            return rc;
        if (n_tables)
            return nr_err_set(NR_EFORMAT, "store: open: the file is a SQLite database but not "
                                          "a nanorag store");
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d", NR_STORE_APP_ID);
        if ((rc = exec_sql(s, sql, "open: marking the file")))
            return rc;
    }
    if ((rc = exec_sql(s, migrations[v], "open: migrating the schema")))
        return rc;
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", (int)v + 1);
    if ((rc = exec_sql(s, sql, "open: setting the schema version")))
        return rc;
    m->step_done = (int)v;
    return NR_OK;
}

/*
 * Read-only checks before anything is written (setting WAL mode rewrites the
 * header): a SQLite file, not from a newer nanorag, ours or empty.
 * *version is the schema version found.
 */
static int check_header(struct nr_store *s, int64_t *version)
{
    /* One statement, one snapshot: another process may be creating the
     * schema right now, and version and tables must agree. */
    static const char sql[] = "SELECT (SELECT user_version FROM pragma_user_version),"
                              " (SELECT application_id FROM pragma_application_id),"
                              " (SELECT count(*) FROM sqlite_schema)";
    sqlite3_stmt *st = NULL;
    int64_t v, app, n_tables;
    int rc;

    rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        /* Reading the header is where a file that is not a database shows up. */
        rc = (rc & 0xff) == SQLITE_NOTADB ? nr_err_set(NR_EFORMAT, "store: open: not a SQLite "
                                                                   "database")
                                          : db_fail(s, rc, "open: reading the header");
        sqlite3_finalize(st);
        return rc;
    }
    v = sqlite3_column_int64(st, 0);
    app = sqlite3_column_int64(st, 1);
    n_tables = sqlite3_column_int64(st, 2);
    sqlite3_finalize(st);
    if (v > NR_STORE_SCHEMA_VERSION || v < 0)
        return nr_err_set(NR_EUNSUPPORTED,
                          "store: open: the store has schema version %lld, newer than this "
                          "build supports (%d): use a newer nanorag",
                          (long long)v, NR_STORE_SCHEMA_VERSION);
    if ((v > 0 && app != NR_STORE_APP_ID) || (v == 0 && n_tables > 0))
        return nr_err_set(NR_EFORMAT, "store: open: the file is a SQLite database but not a "
                                      "nanorag store");
    *version = v;
    return NR_OK;
}

static int migrate(struct nr_store *s, int64_t v)
{
    while (v < NR_STORE_SCHEMA_VERSION) {
        struct migrate_ctx m;
        int rc = run_txn(s, 1, "open: migrating the schema", migrate_body, &m);
        if (rc)
            return rc;
        v = m.step_done + 1;
    }
    return NR_OK;
}

static void db_disconnect(struct nr_store *s)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
        s->st[i] = NULL;
    }
    /* The last connection to close checkpoints the WAL and removes it. */
    sqlite3_close_v2(s->db);
    s->db = NULL;
}

/*
 * Open and configure a connection to s->path. With version != NULL (the
 * first connection) the schema version found is returned for migration;
 * without (a reconnect) it must be ours.
 */
static int db_connect(struct nr_store *s, int64_t *version)
{
    char sql[64];
    int64_t v = 0, fk = 0;
    int rc;

    rc = sqlite3_open_v2(s->path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                             SQLITE_OPEN_EXRESCODE,
                         NULL);
    if (rc != SQLITE_OK) {
        /* SQLite's message for this is "unable to open database file": no path. */
        rc = s->db ? db_fail(s, rc, "open") : nr_err_set(NR_ENOMEM, "store: open: out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    if ((rc = sqlite3_busy_timeout(s->db, NR_STORE_BUSY_MS)) != SQLITE_OK ||
        (rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL)) != SQLITE_OK ||
        (rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_DQS_DML, 0, NULL)) != SQLITE_OK ||
        (rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_DQS_DDL, 0, NULL)) != SQLITE_OK) {
        rc = db_fail(s, rc, "open: configuring the connection");
        goto fail;
    }
    if ((rc = check_header(s, &v)))
        goto fail;
    if (!version && v != NR_STORE_SCHEMA_VERSION) {
        rc = nr_err_set(NR_EFORMAT, "store: reopen: the file's schema version changed");
        goto fail;
    }
    if ((rc = set_wal(s)))
        goto fail;
    snprintf(sql, sizeof sql, "PRAGMA journal_size_limit = %d", NR_STORE_WAL_LIMIT);
    if ((rc = exec_sql(s, "PRAGMA synchronous = FULL", "open: setting synchronous")) ||
        (rc = exec_sql(s, "PRAGMA foreign_keys = ON", "open: enabling foreign keys")) ||
        (rc = exec_sql(s, sql, "open: setting the WAL size limit")) ||
        (rc = query_int(s, "PRAGMA foreign_keys", "open: checking foreign keys", &fk)))
        goto fail;
    if (fk != 1) {
        rc = nr_err_set(NR_EUNSUPPORTED, "store: open: SQLite built without foreign keys");
        goto fail;
    }
    if ((rc = query_int(s, "PRAGMA max_page_count", "open: reading the page limit",
                        &s->max_pages_default)))
        goto fail;
    if (s->max_pages) {
        int64_t got;
        snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)s->max_pages);
        if ((rc = query_int(s, sql, "open: setting the size limit", &got)))
            goto fail;
    }
    if (version)
        *version = v;
    return NR_OK;
fail:
    db_disconnect(s);
    return rc;
}

int nr_store_open(const char *path, struct nr_store **out)
{
    struct nr_store *s;
    int64_t version = 0;
    int rc;

    *out = NULL;
    if (!path || !*path)
        return nr_err_set(NR_EINVAL, "store: open: no path");
    s = nr_calloc(1, sizeof *s);
    if (!s || !(s->path = nr_strdup(path))) {
        nr_free(s);
        return nr_err_set(NR_ENOMEM, "store: open: out of memory");
    }
    if ((rc = db_connect(s, &version)) || (rc = migrate(s, version))) {
        nr_store_close(s);
        return rc;
    }
    *out = s;
    return NR_OK;
}

void nr_store_close(struct nr_store *s)
{
    if (!s)
        return;
    db_disconnect(s);
    nr_free(s->vbuf);
    nr_free(s->path);
    nr_free(s);
}

int nr_store_set_size_limit(struct nr_store *s, int64_t max_bytes)
{
    int64_t page_size, pages, got;
    char sql[80];
    int rc;

    if (max_bytes < 0)
        return nr_err_set(NR_EINVAL, "store: size limit must be >= 0");
    if (!s->db && (rc = db_connect(s, NULL)))
        return rc;
    if ((rc = query_int(s, "PRAGMA page_size", "size limit: reading the page size", &page_size)))
        return rc;
    pages = max_bytes ? max_bytes / (page_size > 0 ? page_size : 4096) : s->max_pages_default;
    if (pages < 1)
        pages = 1;
    /* SQLite never lowers the limit below the current size; it answers with the limit set. */
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)pages);
    if ((rc = query_int(s, sql, "size limit", &got)))
        return rc;
    s->max_pages = max_bytes ? got : 0;
    return NR_OK;
}

/* ---------------------------------------------------------------- put */

struct put_ctx {
    const struct nr_doc_in *d;
    const struct nr_chunk_in *chunks;
    int n_chunks;
    const float *vectors;
    int dim;
    const char *model_id;
    const char *hash; /* 64 hex */
    const char *text; /* never NULL */
    int64_t now;
    int64_t doc_id; /* out */
    int status;     /* out */
};

/* The blob of vector row i: the caller's floats as they are on a little-endian
 * host, else byte-swapped into s->vbuf. */
static const void *vector_le(struct nr_store *s, const float *v, int dim)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    (void)s;
    (void)dim;
    return v;
#else
    for (int i = 0; i < dim; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        u = __builtin_bswap32(u);
        memcpy(&s->vbuf[i], &u, 4);
    }
    return s->vbuf;
#endif
}

/* The hash, chunk count and model of a ST_DOC_FIND row. */
static int doc_find_row(sqlite3_stmt *st, const char **hash, int *n_chunks, const char **model,
                        const char *what)
{
    *hash = (const char *)sqlite3_column_text(st, 1);
    *n_chunks = sqlite3_column_int(st, 2);
    *model = (const char *)sqlite3_column_text(st, 3);
    if (!*hash || (*n_chunks > 0 && !*model && sqlite3_column_type(st, 3) != SQLITE_NULL))
        return nr_err_set(NR_ENOMEM, "store: %s: out of memory reading the document", what);
    if (*n_chunks > 0 && !*model)
        return nr_err_set(NR_EFORMAT,
                          "store: %s: document %lld has no vectors though it "
                          "counts %d chunks",
                          what, (long long)sqlite3_column_int64(st, 0), *n_chunks);
    return NR_OK;
}

static int put_chunks(struct nr_store *s, struct put_ctx *p)
{
    sqlite3_stmt *ci = NULL, *vi = NULL;
    int rc;

    if ((rc = stmt(s, ST_CHUNK_ADD, &ci)) || (rc = stmt(s, ST_VEC_ADD, &vi)))
        return rc;
    for (int i = 0; i < p->n_chunks; i++) {
        const struct nr_chunk_in *c = &p->chunks[i];
        int64_t chunk_id;
        int src = SQLITE_OK;
        char what[64];

        snprintf(what, sizeof what, "put: inserting chunk %d", i);
        if ((src = sqlite3_bind_int64(ci, 1, p->doc_id)) != SQLITE_OK ||
            (src = sqlite3_bind_int(ci, 2, i)) != SQLITE_OK ||
            (src = sqlite3_bind_int64(ci, 3, c->start)) != SQLITE_OK ||
            (src = sqlite3_bind_int64(ci, 4, c->end)) != SQLITE_OK ||
            (src = c->page > 0 ? sqlite3_bind_int(ci, 5, c->page) : sqlite3_bind_null(ci, 5)) !=
                SQLITE_OK ||
            (src = sqlite3_bind_int(ci, 6, c->n_tokens)) != SQLITE_OK ||
            (src = bind_text(ci, 7, c->heading && *c->heading ? c->heading : NULL)) != SQLITE_OK ||
            (src = sqlite3_bind_text(ci, 8, p->text + c->start, (int)(c->end - c->start),
                                     SQLITE_STATIC)) != SQLITE_OK) {
            stmt_done(ci);
            return db_fail(s, src, what);
        }
        if ((rc = step_done(s, ci, what)))
            return rc;
        chunk_id = sqlite3_last_insert_rowid(s->db);

        snprintf(what, sizeof what, "put: inserting the vector of chunk %d", i);
        if ((src = sqlite3_bind_int64(vi, 1, chunk_id)) != SQLITE_OK ||
            (src = sqlite3_bind_text(vi, 2, p->model_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (src = sqlite3_bind_int(vi, 3, p->dim)) != SQLITE_OK ||
            (src = sqlite3_bind_blob(vi, 4, vector_le(s, p->vectors + (size_t)i * p->dim, p->dim),
                                     p->dim * 4, SQLITE_STATIC)) != SQLITE_OK) {
            stmt_done(vi);
            return db_fail(s, src, what);
        }
        if ((rc = step_done(s, vi, what)))
            return rc;
    }
    return NR_OK;
}

static int put_body(struct nr_store *s, void *arg)
{
    struct put_ctx *p = arg;
    const struct nr_doc_in *d = p->d;
    sqlite3_stmt *st = NULL;
    int64_t coll_id = 0, doc_id = 0;
    int rc, src, found, unchanged = 0;

    /* 1. Is (collection, source) there, and is it the same version? */
    if ((rc = stmt(s, ST_DOC_FIND, &st)))
        return rc;
    if ((src = bind_text(st, 1, d->collection)) != SQLITE_OK ||
        (src = bind_text(st, 2, d->source)) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(s, src, "put: looking up the document");
    }
    found = step_row(s, st, "put: looking up the document");
    if (found < 0)
        return found;
    if (found) {
        const char *hash, *model;
        int old_chunks;
        doc_id = sqlite3_column_int64(st, 0);
        if ((rc = doc_find_row(st, &hash, &old_chunks, &model, "put"))) {
            stmt_done(st);
            return rc;
        }
        unchanged = strcmp(hash, p->hash) == 0 &&
                    (old_chunks == 0 || p->n_chunks == 0 || strcmp(model, p->model_id) == 0);
    }
    stmt_done(st);
    if (unchanged) {
        p->doc_id = doc_id;
        p->status = NR_STORE_UNCHANGED;
        return NR_OK; /* the empty transaction commits without writing */
    }

    if (found) {
        /* 2a. Replace: chunks first (their vectors cascade, their FTS entries
         * go through the trigger), then the row, keeping its id. */
        if ((rc = stmt(s, ST_CHUNKS_DEL, &st)))
            return rc;
        if ((src = sqlite3_bind_int64(st, 1, doc_id)) != SQLITE_OK) {
            stmt_done(st);
            return db_fail(s, src, "put: removing the old chunks");
        }
        if ((rc = step_done(s, st, "put: removing the old chunks")))
            return rc;
        if ((rc = stmt(s, ST_DOC_UPDATE, &st)))
            return rc;
        if ((src = sqlite3_bind_int64(st, 1, doc_id)) != SQLITE_OK ||
            (src = bind_text(st, 2, d->title)) != SQLITE_OK ||
            (src = bind_text(st, 3, d->media_type)) != SQLITE_OK ||
            (src = bind_text(st, 4, p->hash)) != SQLITE_OK ||
            (src = bind_text(st, 5, d->metadata_json)) != SQLITE_OK ||
            (src = sqlite3_bind_text(st, 6, p->text, (int)d->text_len, SQLITE_STATIC)) !=
                SQLITE_OK ||
            (src = sqlite3_bind_int64(st, 7, (int64_t)d->text_len)) != SQLITE_OK ||
            (src = sqlite3_bind_int(st, 8, p->n_chunks)) != SQLITE_OK ||
            (src = sqlite3_bind_int64(st, 9, p->now)) != SQLITE_OK) {
            stmt_done(st);
            return db_fail(s, src, "put: updating the document");
        }
        if ((rc = step_done(s, st, "put: updating the document")))
            return rc;
        p->status = NR_STORE_REPLACED;
    } else {
        /* 2b. Add: the collection first if it is new. */
        if ((rc = stmt(s, ST_COLL_GET, &st)))
            return rc;
        if ((src = bind_text(st, 1, d->collection)) != SQLITE_OK) {
            stmt_done(st);
            return db_fail(s, src, "put: looking up the collection");
        }
        found = step_row(s, st, "put: looking up the collection");
        if (found < 0)
            return found;
        if (found)
            coll_id = sqlite3_column_int64(st, 0);
        stmt_done(st);
        if (!found) {
            if ((rc = stmt(s, ST_COLL_ADD, &st)))
                return rc;
            if ((src = bind_text(st, 1, d->collection)) != SQLITE_OK ||
                (src = sqlite3_bind_int64(st, 2, p->now)) != SQLITE_OK) {
                stmt_done(st);
                return db_fail(s, src, "put: adding the collection");
            }
            if ((rc = step_done(s, st, "put: adding the collection")))
                return rc;
            coll_id = sqlite3_last_insert_rowid(s->db);
        }
        if ((rc = stmt(s, ST_DOC_ADD, &st)))
            return rc;
        if ((src = sqlite3_bind_int64(st, 1, coll_id)) != SQLITE_OK ||
            (src = bind_text(st, 2, d->source)) != SQLITE_OK ||
            (src = bind_text(st, 3, d->title)) != SQLITE_OK ||
            (src = bind_text(st, 4, d->media_type)) != SQLITE_OK ||
            (src = bind_text(st, 5, p->hash)) != SQLITE_OK ||
            (src = bind_text(st, 6, d->metadata_json)) != SQLITE_OK ||
            (src = sqlite3_bind_text(st, 7, p->text, (int)d->text_len, SQLITE_STATIC)) !=
                SQLITE_OK ||
            (src = sqlite3_bind_int64(st, 8, (int64_t)d->text_len)) != SQLITE_OK ||
            (src = sqlite3_bind_int(st, 9, p->n_chunks)) != SQLITE_OK ||
            (src = sqlite3_bind_int64(st, 10, p->now)) != SQLITE_OK) {
            stmt_done(st);
            return db_fail(s, src, "put: adding the document");
        }
        if ((rc = step_done(s, st, "put: adding the document")))
            return rc;
        doc_id = sqlite3_last_insert_rowid(s->db);
        p->status = NR_STORE_ADDED;
    }
    p->doc_id = doc_id;

    /* 3. The chunks with their vectors (the FTS entries follow by trigger). */
    return put_chunks(s, p);
}

static int check_put_input(const struct nr_doc_in *d, const struct nr_chunk_in *chunks,
                           int n_chunks, const float *vectors, int dim, const char *model_id)
{
    int rc;
    size_t n_floats;

    if (!d)
        return nr_err_set(NR_EINVAL, "store: put: no document");
    if ((rc = check_collection(d->collection)) ||
        (rc = check_str(d->source, NR_STORE_MAX_STRING, 0, "source")) ||
        (rc = check_str(d->title, NR_STORE_MAX_STRING, 1, "title")) ||
        (rc = check_str(d->media_type, NR_STORE_MAX_SHORT, 1, "media type")) ||
        (rc = check_metadata(d->metadata_json)))
        return rc;
    if (d->content_hash && (rc = check_hash(d->content_hash)))
        return rc;
    if (d->text_len > NR_STORE_MAX_TEXT)
        return nr_err_set(NR_ELIMIT, "store: document text is longer than %d bytes",
                          NR_STORE_MAX_TEXT);
    if (!d->text && d->text_len)
        return nr_err_set(NR_EINVAL, "store: document text is missing");
    if (d->text_len && !utf8_ok((const unsigned char *)d->text, d->text_len))
        return nr_err_set(NR_EINVAL, "store: document text is not valid UTF-8 (or has a NUL)");
    if (n_chunks < 0)
        return nr_err_set(NR_EINVAL, "store: negative chunk count");
    if (n_chunks > NR_STORE_MAX_CHUNKS)
        return nr_err_set(NR_ELIMIT, "store: more than %d chunks", NR_STORE_MAX_CHUNKS);
    if (n_chunks && !chunks)
        return nr_err_set(NR_EINVAL, "store: chunks are missing");
    for (int i = 0; i < n_chunks; i++) {
        const struct nr_chunk_in *c = &chunks[i];
        const unsigned char *t = (const unsigned char *)d->text;
        if (c->start < 0 || c->start > c->end || (uint64_t)c->end > d->text_len)
            return nr_err_set(NR_EINVAL,
                              "store: chunk %d range [%lld, %lld) is outside the text (%zu bytes)",
                              i, (long long)c->start, (long long)c->end, d->text_len);
        if (((size_t)c->start < d->text_len && (t[c->start] & 0xc0) == 0x80) ||
            ((size_t)c->end < d->text_len && (t[c->end] & 0xc0) == 0x80))
            return nr_err_set(NR_EINVAL, "store: chunk %d splits a UTF-8 character", i);
        if (c->page < 0 || c->n_tokens < 0)
            return nr_err_set(NR_EINVAL, "store: chunk %d has a negative page or token count", i);
        if ((rc = check_str(c->heading, NR_STORE_MAX_STRING, 1, "chunk heading")))
            return rc;
    }
    if (n_chunks == 0)
        return NR_OK;
    if (!vectors)
        return nr_err_set(NR_EINVAL, "store: vectors are missing (a document is stored only "
                                     "with its vectors)");
    if (dim < 1 || dim > NR_STORE_MAX_DIM)
        return nr_err_set(NR_EINVAL, "store: vector dimension %d is outside 1..%d", dim,
                          NR_STORE_MAX_DIM);
    if ((rc = check_model(model_id)))
        return rc;
    if (nr_mul_size((size_t)n_chunks, (size_t)dim, &n_floats))
        return nr_err_set(NR_ELIMIT, "store: too many vector values");
    for (size_t i = 0; i < n_floats; i++)
        if (!isfinite(vectors[i]))
            return nr_err_set(NR_EINVAL, "store: vector of chunk %zu has a non-finite value",
                              i / (size_t)dim);
    return NR_OK;
}

/* Scratch for one vector of dim floats. */
static int vbuf_reserve(struct nr_store *s, int dim)
{
    float *v;
    if ((size_t)dim <= s->vbuf_cap)
        return NR_OK;
    v = nr_malloc((size_t)dim * sizeof *v);
    if (!v)
        return nr_err_set(NR_ENOMEM, "store: out of memory for a vector");
    nr_free(s->vbuf);
    s->vbuf = v;
    s->vbuf_cap = (size_t)dim;
    return NR_OK;
}

int nr_store_put(struct nr_store *s, const struct nr_doc_in *d, const struct nr_chunk_in *chunks,
                 int n_chunks, const float *vectors, int dim, const char *model_id, int64_t *doc_id,
                 int *status)
{
    struct put_ctx p;
    char hash[NR_SHA256_HEX];
    int rc;

    if ((rc = check_put_input(d, chunks, n_chunks, vectors, dim, model_id)))
        return rc;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    if (n_chunks && (rc = vbuf_reserve(s, dim)))
        return rc;
#endif
    memset(&p, 0, sizeof p);
    p.d = d;
    p.chunks = chunks;
    p.n_chunks = n_chunks;
    p.vectors = vectors;
    p.dim = dim;
    p.model_id = n_chunks ? model_id : "";
    p.text = d->text ? d->text : "";
    if (d->content_hash) {
        p.hash = d->content_hash;
    } else {
        nr_sha256_hex(p.text, d->text_len, hash);
        p.hash = hash;
    }
    p.now = now_ms();
    if ((rc = run_txn(s, 1, "put", put_body, &p)))
        return rc;
    if (doc_id)
        *doc_id = p.doc_id;
    if (status)
        *status = p.status;
    return NR_OK;
}

/* ---------------------------------------------------------------- has / remove */

struct has_ctx {
    const char *collection, *source, *hash, *model;
    int answer;
    int64_t doc_id;
};

static int has_body(struct nr_store *s, void *arg)
{
    struct has_ctx *h = arg;
    sqlite3_stmt *st = NULL;
    int rc, src;

    h->answer = 0;
    if ((rc = stmt(s, ST_DOC_FIND, &st)))
        return rc;
    if ((src = bind_text(st, 1, h->collection)) != SQLITE_OK ||
        (src = bind_text(st, 2, h->source)) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(s, src, "has: looking up the document");
    }
    rc = step_row(s, st, "has: looking up the document");
    if (rc < 0)
        return rc;
    if (rc == 0) {
        stmt_done(st);
        return NR_OK;
    }
    {
        const char *hash, *model;
        int n_chunks;
        if ((rc = doc_find_row(st, &hash, &n_chunks, &model, "has"))) {
            stmt_done(st);
            return rc;
        }
        h->answer = (!h->hash || strcmp(hash, h->hash) == 0) &&
                    (!h->model || n_chunks == 0 || strcmp(model, h->model) == 0);
        h->doc_id = sqlite3_column_int64(st, 0);
    }
    stmt_done(st);
    return NR_OK;
}

int nr_store_has(struct nr_store *s, const char *collection, const char *source,
                 const char *content_hash, const char *model_id, int64_t *doc_id)
{
    struct has_ctx h = {collection, source, content_hash, model_id, 0, 0};
    int rc;

    if ((rc = check_collection(collection)) ||
        (rc = check_str(source, NR_STORE_MAX_STRING, 0, "source")) ||
        (content_hash && (rc = check_hash(content_hash))) ||
        (model_id && (rc = check_model(model_id))))
        return rc;
    if ((rc = run_txn(s, 0, "has", has_body, &h)))
        return rc;
    if (h.answer && doc_id)
        *doc_id = h.doc_id;
    return h.answer;
}

static int remove_body(struct nr_store *s, void *arg)
{
    int64_t id = *(int64_t *)arg;
    sqlite3_stmt *st = NULL;
    int rc, src;

    /* Chunks explicitly first, so the FTS trigger sees each one go. */
    if ((rc = stmt(s, ST_CHUNKS_DEL, &st)))
        return rc;
    if ((src = sqlite3_bind_int64(st, 1, id)) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(s, src, "remove: deleting chunks");
    }
    if ((rc = step_done(s, st, "remove: deleting chunks")))
        return rc;
    if ((rc = stmt(s, ST_DOC_DEL, &st)))
        return rc;
    if ((src = sqlite3_bind_int64(st, 1, id)) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(s, src, "remove: deleting the document");
    }
    if ((rc = step_done(s, st, "remove: deleting the document")))
        return rc;
    if (sqlite3_changes(s->db) != 1)
        return nr_err_set(NR_ENOTFOUND, "store: remove: no document %lld", (long long)id);
    return NR_OK;
}

int nr_store_remove(struct nr_store *s, int64_t doc_id)
{
    if (doc_id <= 0)
        return nr_err_set(NR_ENOTFOUND, "store: remove: no document %lld", (long long)doc_id);
    return run_txn(s, 1, "remove", remove_body, &doc_id);
}

/* ---------------------------------------------------------------- documents and chunks */

static void doc_fields_free(struct nr_store_doc *d)
{
    nr_free(d->collection);
    nr_free(d->source);
    nr_free(d->title);
    nr_free(d->media_type);
    nr_free(d->metadata_json);
    nr_free(d->chunk_ids);
    memset(d, 0, sizeof *d);
}

/* Fill d from a row of DOC_COLUMNS. */
static int doc_from_row(sqlite3_stmt *st, struct nr_store_doc *d)
{
    const unsigned char *hash;
    int rc;

    memset(d, 0, sizeof *d);
    d->id = sqlite3_column_int64(st, 0);
    d->collection_id = sqlite3_column_int64(st, 1);
    if ((rc = col_strdup(st, 2, &d->collection)) || (rc = col_strdup(st, 3, &d->source)) ||
        (rc = col_strdup(st, 4, &d->title)) || (rc = col_strdup(st, 5, &d->media_type)) ||
        (rc = col_strdup(st, 6, &d->metadata_json)))
        goto fail;
    hash = sqlite3_column_text(st, 7);
    if (!hash || sqlite3_column_bytes(st, 7) != 64) {
        rc = hash ? nr_err_set(NR_EFORMAT, "store: document %lld has a bad hash", (long long)d->id)
                  : nr_err_set(NR_ENOMEM, "store: out of memory reading a hash");
        goto fail;
    }
    memcpy(d->content_hash, hash, 65);
    d->n_chunks = sqlite3_column_int(st, 8);
    d->text_len = sqlite3_column_int64(st, 9);
    d->created_at = sqlite3_column_int64(st, 10);
    d->updated_at = sqlite3_column_int64(st, 11);
    if (!d->collection || !d->source) {
        rc = nr_err_set(NR_EFORMAT, "store: document %lld lacks a collection or source",
                        (long long)d->id);
        goto fail;
    }
    return NR_OK;
fail:
    doc_fields_free(d);
    return rc;
}

struct doc_get_ctx {
    int64_t id;
    struct nr_store_doc *d; /* out */
};

static int doc_get_body(struct nr_store *s, void *arg)
{
    struct doc_get_ctx *g = arg;
    struct nr_store_doc *d;
    sqlite3_stmt *st = NULL;
    int rc, src, n = 0;

    if ((rc = stmt(s, ST_DOC_GET, &st)))
        return rc;
    if ((src = sqlite3_bind_int64(st, 1, g->id)) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(s, src, "doc get");
    }
    rc = step_row(s, st, "doc get");
    if (rc < 0)
        return rc;
    if (rc == 0) {
        stmt_done(st);
        return nr_err_set(NR_ENOTFOUND, "store: no document %lld", (long long)g->id);
    }
    d = nr_calloc(1, sizeof *d);
    if (!d) {
        stmt_done(st);
        return nr_err_set(NR_ENOMEM, "store: doc get: out of memory");
    }
    rc = doc_from_row(st, d);
    stmt_done(st);
    if (rc)
        goto fail;
    if (d->n_chunks < 0 || d->n_chunks > NR_STORE_MAX_CHUNKS) {
        rc = nr_err_set(NR_EFORMAT, "store: document %lld has a bad chunk count", (long long)d->id);
        goto fail;
    }
    d->chunk_ids = nr_malloc(((size_t)d->n_chunks + 1) * sizeof *d->chunk_ids);
    if (!d->chunk_ids) {
        rc = nr_err_set(NR_ENOMEM, "store: doc get: out of memory");
        goto fail;
    }
    /* Same snapshot as the row: the count must match (I1). */
    if ((rc = stmt(s, ST_DOC_CHUNK_IDS, &st)))
        goto fail;
    if ((src = sqlite3_bind_int64(st, 1, g->id)) != SQLITE_OK) {
        stmt_done(st);
        rc = db_fail(s, src, "doc get: chunk ids");
        goto fail;
    }
    while ((rc = step_row(s, st, "doc get: chunk ids")) == 1) {
        if (n == d->n_chunks) {
            n++;
            break;
        }
        d->chunk_ids[n++] = sqlite3_column_int64(st, 0);
    }
    if (rc < 0)
        goto fail;
    stmt_done(st);
    if (n != d->n_chunks) {
        rc = nr_err_set(NR_EFORMAT, "store: document %lld has %s chunks than its count (%d)",
                        (long long)d->id, n < d->n_chunks ? "fewer" : "more", d->n_chunks);
        goto fail;
    }
    g->d = d;
    return NR_OK;
fail:
    doc_fields_free(d);
    nr_free(d);
    return rc;
}

int nr_store_doc_get(struct nr_store *s, int64_t doc_id, struct nr_store_doc **out)
{
    struct doc_get_ctx g = {doc_id, NULL};
    int rc;

    *out = NULL;
    if ((rc = run_txn(s, 0, "doc get", doc_get_body, &g)))
        return rc;
    *out = g.d;
    return NR_OK;
}

void nr_store_doc_free(struct nr_store_doc *d)
{
    if (!d)
        return;
    doc_fields_free(d);
    nr_free(d);
}

struct doc_list_ctx {
    const char *collection;
    int64_t after;
    int limit;
    struct nr_store_doc *docs; /* out */
    int n;                     /* out */
};

static int doc_list_body(struct nr_store *s, void *arg)
{
    struct doc_list_ctx *l = arg;
    struct nr_store_doc *docs = NULL;
    sqlite3_stmt *st = NULL;
    int rc, src, n = 0, cap = 0;

    if ((rc = stmt(s, ST_DOC_LIST, &st)))
        return rc;
    if ((src = sqlite3_bind_int64(st, 1, l->after)) != SQLITE_OK ||
        (src = bind_text(st, 2, l->collection)) != SQLITE_OK ||
        (src = sqlite3_bind_int(st, 3, l->limit)) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(s, src, "doc list");
    }
    while ((rc = step_row(s, st, "doc list")) == 1) {
        if (n == cap) {
            int ncap = cap ? 2 * cap : 16;
            struct nr_store_doc *nd;
            if (ncap > l->limit)
                ncap = l->limit;
            nd = nr_realloc(docs, (size_t)ncap * sizeof *nd);
            if (!nd) {
                rc = nr_err_set(NR_ENOMEM, "store: doc list: out of memory");
                break;
            }
            docs = nd;
            cap = ncap;
        }
        if ((rc = doc_from_row(st, &docs[n])))
            break;
        n++;
    }
    stmt_done(st);
    if (rc < 0) {
        nr_store_doc_list_free(docs, n);
        return rc;
    }
    l->docs = docs;
    l->n = n;
    return NR_OK;
}

int nr_store_doc_list(struct nr_store *s, const char *collection, int64_t after_id, int limit,
                      struct nr_store_doc **docs, int *n)
{
    struct doc_list_ctx l = {collection, after_id, limit, NULL, 0};
    int rc;

    *docs = NULL;
    *n = 0;
    if (collection && (rc = check_collection(collection)))
        return rc;
    if (limit < 1 || limit > NR_STORE_MAX_LIST)
        return nr_err_set(NR_EINVAL, "store: doc list: limit must be 1..%d", NR_STORE_MAX_LIST);
    if ((rc = run_txn(s, 0, "doc list", doc_list_body, &l)))
        return rc;
    *docs = l.docs;
    *n = l.n;
    return NR_OK;
}

void nr_store_doc_list_free(struct nr_store_doc *docs, int n)
{
    if (!docs)
        return;
    for (int i = 0; i < n; i++)
        doc_fields_free(&docs[i]);
    nr_free(docs);
}

struct doc_text_ctx {
    int64_t id;
    char *text; /* out */
    size_t len; /* out */
};

static int doc_text_body(struct nr_store *s, void *arg)
{
    struct doc_text_ctx *t = arg;
    sqlite3_stmt *st = NULL;
    const unsigned char *p;
    int rc, src, n;

    if ((rc = stmt(s, ST_DOC_TEXT, &st)))
        return rc;
    if ((src = sqlite3_bind_int64(st, 1, t->id)) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(s, src, "doc text");
    }
    rc = step_row(s, st, "doc text");
    if (rc < 0)
        return rc;
    if (rc == 0) {
        stmt_done(st);
        return nr_err_set(NR_ENOTFOUND, "store: no document %lld", (long long)t->id);
    }
    p = sqlite3_column_text(st, 0);
    n = sqlite3_column_bytes(st, 0);
    if (!p) {
        stmt_done(st);
        return nr_err_set(NR_ENOMEM, "store: doc text: out of memory");
    }
    if ((int64_t)n != sqlite3_column_int64(st, 1)) {
        stmt_done(st);
        return nr_err_set(NR_EFORMAT, "store: document %lld text length differs from its record",
                          (long long)t->id);
    }
    t->text = nr_strndup((const char *)p, (size_t)n);
    t->len = (size_t)n;
    stmt_done(st);
    return t->text ? NR_OK : nr_err_set(NR_ENOMEM, "store: doc text: out of memory");
}

int nr_store_doc_text(struct nr_store *s, int64_t doc_id, char **text, size_t *len)
{
    struct doc_text_ctx t = {doc_id, NULL, 0};
    int rc;

    *text = NULL;
    *len = 0;
    if ((rc = run_txn(s, 0, "doc text", doc_text_body, &t)))
        return rc;
    *text = t.text;
    *len = t.len;
    return NR_OK;
}

void nr_store_chunk_free(struct nr_store_chunk *c)
{
    if (!c)
        return;
    nr_free(c->heading);
    nr_free(c->text);
    nr_free(c->source);
    nr_free(c->title);
    nr_free(c);
}

struct chunk_get_ctx {
    int64_t id;
    struct nr_store_chunk *c; /* out */
};

static int chunk_get_body(struct nr_store *s, void *arg)
{
    struct chunk_get_ctx *g = arg;
    struct nr_store_chunk *c;
    sqlite3_stmt *st = NULL;
    int rc, src;

    if ((rc = stmt(s, ST_CHUNK_GET, &st)))
        return rc;
    if ((src = sqlite3_bind_int64(st, 1, g->id)) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(s, src, "chunk get");
    }
    rc = step_row(s, st, "chunk get");
    if (rc < 0)
        return rc;
    if (rc == 0) {
        stmt_done(st);
        return nr_err_set(NR_ENOTFOUND, "store: no chunk %lld", (long long)g->id);
    }
    c = nr_calloc(1, sizeof *c);
    if (!c) {
        stmt_done(st);
        return nr_err_set(NR_ENOMEM, "store: chunk get: out of memory");
    }
    c->id = sqlite3_column_int64(st, 0);
    c->doc_id = sqlite3_column_int64(st, 1);
    c->collection_id = sqlite3_column_int64(st, 2);
    c->ordinal = sqlite3_column_int(st, 3);
    c->start = sqlite3_column_int64(st, 4);
    c->end = sqlite3_column_int64(st, 5);
    c->page = sqlite3_column_type(st, 6) == SQLITE_NULL ? 0 : sqlite3_column_int(st, 6);
    c->n_tokens = sqlite3_column_int(st, 7);
    if ((rc = col_strdup(st, 8, &c->heading)) || (rc = col_strdup(st, 9, &c->text)) ||
        (rc = col_strdup(st, 10, &c->source)) || (rc = col_strdup(st, 11, &c->title))) {
        stmt_done(st);
        nr_store_chunk_free(c);
        return rc;
    }
    stmt_done(st);
    if (!c->text || !c->source) {
        nr_store_chunk_free(c);
        return nr_err_set(NR_EFORMAT, "store: chunk %lld lacks its text or source",
                          (long long)g->id);
    }
    g->c = c;
    return NR_OK;
}

int nr_store_chunk_get(struct nr_store *s, int64_t chunk_id, struct nr_store_chunk **out)
{
    struct chunk_get_ctx g = {chunk_id, NULL};
    int rc;

    *out = NULL;
    if ((rc = run_txn(s, 0, "chunk get", chunk_get_body, &g)))
        return rc;
    *out = g.c;
    return NR_OK;
}

struct coll_ctx {
    struct nr_store_collection *cols; /* out */
    int n;                            /* out */
};

static int collections_body(struct nr_store *s, void *arg)
{
    struct coll_ctx *c = arg;
    struct nr_store_collection *cols = NULL;
    sqlite3_stmt *st = NULL;
    int rc, n = 0, cap = 0;

    if ((rc = stmt(s, ST_COLL_LIST, &st)))
        return rc;
    while ((rc = step_row(s, st, "collections")) == 1) {
        const unsigned char *name = sqlite3_column_text(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        if (n == cap) {
            int ncap = cap ? 2 * cap : 8;
            struct nr_store_collection *nc = nr_realloc(cols, (size_t)ncap * sizeof *nc);
            if (!nc) {
                rc = nr_err_set(NR_ENOMEM, "store: collections: out of memory");
                break;
            }
            cols = nc;
            cap = ncap;
        }
        if (!name || len < 1 || len > NR_STORE_MAX_NAME) {
            rc = name ? nr_err_set(NR_EFORMAT, "store: a collection has a bad name")
                      : nr_err_set(NR_ENOMEM, "store: collections: out of memory");
            break;
        }
        cols[n].id = sqlite3_column_int64(st, 0);
        memcpy(cols[n].name, name, (size_t)len);
        cols[n].name[len] = '\0';
        cols[n].created_at = sqlite3_column_int64(st, 2);
        cols[n].n_docs = sqlite3_column_int64(st, 3);
        cols[n].n_chunks = sqlite3_column_int64(st, 4);
        n++;
    }
    stmt_done(st);
    if (rc < 0) {
        nr_free(cols);
        return rc;
    }
    c->cols = cols;
    c->n = n;
    return NR_OK;
}

int nr_store_collections(struct nr_store *s, struct nr_store_collection **cols, int *n)
{
    struct coll_ctx c = {NULL, 0};
    int rc;

    *cols = NULL;
    *n = 0;
    if ((rc = run_txn(s, 0, "collections", collections_body, &c)))
        return rc;
    *cols = c.cols;
    *n = c.n;
    return NR_OK;
}

/* ---------------------------------------------------------------- BM25 */

/*
 * Turn user text into an FTS5 query that can only mean "any of these
 * words": words are maximal runs of letters, digits, marks and private-use
 * characters (what the unicode61 tokenizer keeps in a token); everything
 * else separates words. Each word is written as an FTS5 string ("word"):
 * it cannot contain a double quote, since '"' separates, so no escaping is
 * needed, and FTS5 never reads a string as an operator, prefix or column
 * filter. Words are joined with OR. Returns the number of words (0: nothing
 * to search for) or < 0 if the text is not UTF-8.
 */
static int fts_query(const char *q, size_t n, char *out, size_t cap)
{
    size_t i = 0, o = 0;
    int words = 0;

    while (i < n && words < NR_STORE_MAX_TERMS) {
        size_t start;
        /* skip separators */
        while (i < n) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t len =
                utf8proc_iterate((const utf8proc_uint8_t *)q + i, (utf8proc_ssize_t)(n - i), &cp);
            utf8proc_category_t cat;
            if (len < 1)
                return -1;
            cat = utf8proc_category(cp);
            if ((cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_NO) ||
                cat == UTF8PROC_CATEGORY_CO)
                break;
            i += (size_t)len;
        }
        if (i >= n)
            break;
        start = i;
        while (i < n) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t len =
                utf8proc_iterate((const utf8proc_uint8_t *)q + i, (utf8proc_ssize_t)(n - i), &cp);
            utf8proc_category_t cat;
            if (len < 1)
                return -1;
            cat = utf8proc_category(cp);
            if (!((cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_NO) ||
                  cat == UTF8PROC_CATEGORY_CO))
                break;
            i += (size_t)len;
        }
        /* " OR " + '"' + word + '"' + NUL always fits: cap is sized for the worst case. */
        if (o + (words ? 4 : 0) + (i - start) + 3 > cap)
            break;
        if (words) {
            memcpy(out + o, " OR ", 4);
            o += 4;
        }
        out[o++] = '"';
        memcpy(out + o, q + start, i - start);
        o += i - start;
        out[o++] = '"';
        words++;
    }
    out[o] = '\0';
    /* The rest of the text is not searched, but it must still be valid UTF-8. */
    if (i < n && !utf8_ok((const unsigned char *)q + i, n - i))
        return -1;
    return words;
}

struct bm25_ctx {
    const char *match;
    int k;
    const struct nr_store_filter *f;
    const char *path; /* JSON path of the metadata key, or NULL */
    struct nr_store_hit *hits;
    int n; /* out */
};

static int bm25_body(struct nr_store *s, void *arg)
{
    struct bm25_ctx *b = arg;
    const struct nr_store_filter *f = b->f;
    sqlite3_stmt *st = NULL;
    int rc, src, n = 0;

    if ((rc = stmt(s, ST_BM25, &st)))
        return rc;
    if ((src = sqlite3_bind_text(st, 1, b->match, -1, SQLITE_STATIC)) != SQLITE_OK ||
        (src = bind_text(st, 2, f ? f->collection : NULL)) != SQLITE_OK ||
        (src = f && f->doc_id ? sqlite3_bind_int64(st, 3, f->doc_id) : sqlite3_bind_null(st, 3)) !=
            SQLITE_OK ||
        (src = bind_text(st, 4, b->path)) != SQLITE_OK ||
        (src = bind_text(st, 5, b->path ? f->meta_value : NULL)) != SQLITE_OK ||
        (src = sqlite3_bind_int(st, 6, b->k)) != SQLITE_OK) {
        stmt_done(st);
        return db_fail(s, src, "bm25");
    }
    while (n < b->k && (rc = step_row(s, st, "bm25")) == 1) {
        b->hits[n].chunk_id = sqlite3_column_int64(st, 0);
        b->hits[n].doc_id = sqlite3_column_int64(st, 1);
        b->hits[n].score = sqlite3_column_double(st, 2);
        n++;
    }
    if (rc < 0)
        return rc;
    stmt_done(st);
    b->n = n;
    return NR_OK;
}

int nr_store_bm25(struct nr_store *s, const char *query, int k, const struct nr_store_filter *f,
                  struct nr_store_hit *hits, int *n_hits)
{
    char match[NR_STORE_MAX_QUERY + NR_STORE_MAX_TERMS * 6 + 1];
    char path[NR_STORE_META_KEY + 8];
    struct bm25_ctx b;
    size_t qn;
    int rc, words;

    *n_hits = 0;
    if (!query)
        return nr_err_set(NR_EINVAL, "store: bm25: no query");
    if (k < 1 || k > NR_STORE_MAX_K)
        return nr_err_set(NR_EINVAL, "store: bm25: k must be 1..%d", NR_STORE_MAX_K);
    if (!hits)
        return nr_err_set(NR_EINVAL, "store: bm25: no output array");
    qn = strnlen(query, NR_STORE_MAX_QUERY + 1);
    if (qn > NR_STORE_MAX_QUERY)
        return nr_err_set(NR_ELIMIT, "store: bm25: query is longer than %d bytes",
                          NR_STORE_MAX_QUERY);
    memset(&b, 0, sizeof b);
    if (f) {
        if (f->collection && (rc = check_collection(f->collection)))
            return rc;
        if (f->doc_id < 0)
            return nr_err_set(NR_EINVAL, "store: bm25: negative document id");
        if (f->meta_key) {
            size_t kn = strnlen(f->meta_key, NR_STORE_META_KEY + 1);
            if (kn == 0 || kn > NR_STORE_META_KEY ||
                !utf8_ok((const unsigned char *)f->meta_key, kn))
                return nr_err_set(NR_EINVAL,
                                  "store: bm25: metadata key must be 1..%d bytes "
                                  "of UTF-8",
                                  NR_STORE_META_KEY);
            /* The key becomes a quoted label of a JSON path ($."key"), passed
             * as a bound value; a quote, backslash or control character in it
             * could change the path, so they are refused. */
            for (size_t i = 0; i < kn; i++) {
                unsigned char c = (unsigned char)f->meta_key[i];
                if (c == '"' || c == '\\' || c < 0x20)
                    return nr_err_set(NR_EINVAL, "store: bm25: metadata key has a quote, "
                                                 "backslash or control character");
            }
            if (!f->meta_value)
                return nr_err_set(NR_EINVAL, "store: bm25: metadata key without a value");
            snprintf(path, sizeof path, "$.\"%s\"", f->meta_key);
            b.path = path;
        }
    }
    words = fts_query(query, qn, match, sizeof match);
    if (words < 0)
        return nr_err_set(NR_EINVAL, "store: bm25: query is not valid UTF-8");
    if (words == 0)
        return NR_OK; /* nothing to search for: no hits */
    b.match = match;
    b.k = k;
    b.f = f;
    b.hits = hits;
    if ((rc = run_txn(s, 0, "bm25", bm25_body, &b)))
        return rc;
    *n_hits = b.n;
    return NR_OK;
}

/* ---------------------------------------------------------------- vectors */

struct each_ctx {
    const char *model;
    int64_t doc_id; /* 0: every document */
    nr_store_vector_fn cb;
    void *ctx;
    int cb_rc; /* out: non-zero if the callback stopped the walk */
};

static int each_body(struct nr_store *s, void *arg)
{
    struct each_ctx *e = arg;
    sqlite3_stmt *st = NULL;
    int rc, src;

    e->cb_rc = 0;
    if ((rc = stmt(s, e->doc_id ? ST_VEC_DOC : ST_VEC_EACH, &st)))
        return rc;
    src = sqlite3_bind_text(st, 1, e->model, -1, SQLITE_STATIC);
    if (src == SQLITE_OK && e->doc_id)
        src = sqlite3_bind_int64(st, 2, e->doc_id);
    if (src != SQLITE_OK) {
        stmt_done(st);
        return db_fail(s, src, "vectors");
    }
    while ((rc = step_row(s, st, "vectors")) == 1) {
        int64_t chunk_id = sqlite3_column_int64(st, 0);
        int64_t dim = sqlite3_column_int64(st, 3);
        const unsigned char *blob = sqlite3_column_blob(st, 4);
        int bytes = sqlite3_column_bytes(st, 4);

        if (dim < 1 || dim > NR_STORE_MAX_DIM || (int64_t)bytes != 4 * dim || !blob) {
            stmt_done(st);
            if (!blob && dim >= 1 && dim <= NR_STORE_MAX_DIM && (int64_t)bytes == 4 * dim)
                return nr_err_set(NR_ENOMEM, "store: vectors: out of memory");
            return nr_err_set(NR_EFORMAT,
                              "store: the vector of chunk %lld has %d bytes for "
                              "dimension %lld",
                              (long long)chunk_id, bytes, (long long)dim);
        }
        if ((rc = vbuf_reserve(s, (int)dim))) {
            stmt_done(st);
            return rc;
        }
        /* Blobs have no alignment guarantee: copy, converting from little-endian. */
        for (int64_t i = 0; i < dim; i++) {
            uint32_t u = (uint32_t)blob[4 * i] | (uint32_t)blob[4 * i + 1] << 8 |
                         (uint32_t)blob[4 * i + 2] << 16 | (uint32_t)blob[4 * i + 3] << 24;
            memcpy(&s->vbuf[i], &u, 4);
        }
        s->no_retry = 1; /* the callback has seen rows: a retry would repeat them */
        e->cb_rc = e->cb(e->ctx, chunk_id, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                         s->vbuf, (int)dim);
        if (e->cb_rc) {
            stmt_done(st);
            return NR_OK;
        }
    }
    if (rc < 0)
        return rc;
    stmt_done(st);
    return NR_OK;
}

static int foreach_vector(struct nr_store *s, const char *model_id, int64_t doc_id,
                          nr_store_vector_fn cb, void *ctx)
{
    struct each_ctx e = {model_id, doc_id, cb, ctx, 0};
    int rc;

    if (!cb)
        return nr_err_set(NR_EINVAL, "store: vectors: no callback");
    if ((rc = check_model(model_id)))
        return rc;
    if ((rc = run_txn(s, 0, "vectors", each_body, &e)))
        return rc;
    return e.cb_rc;
}

int nr_store_foreach_vector(struct nr_store *s, const char *model_id, nr_store_vector_fn cb,
                            void *ctx)
{
    return foreach_vector(s, model_id, 0, cb, ctx);
}

int nr_store_foreach_doc_vector(struct nr_store *s, const char *model_id, int64_t doc_id,
                                nr_store_vector_fn cb, void *ctx)
{
    if (doc_id < 1)
        return nr_err_set(NR_EINVAL, "store: vectors: document id %lld is not positive",
                          (long long)doc_id);
    return foreach_vector(s, model_id, doc_id, cb, ctx);
}

/* ---------------------------------------------------------------- check */

/* Run a query whose first row, first column must equal `want` (text) or be 0 (want NULL). */
static int check_query(struct nr_store *s, const char *sql, const char *want, const char *what)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(s, rc, what);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (want ? !(t && strcmp(t, want) == 0) : sqlite3_column_int64(st, 0) != 0)
            rc = nr_err_set(NR_EFORMAT, "store: check: %s: %s", what, t ? t : "NULL");
        else
            rc = NR_OK;
    } else if (rc == SQLITE_DONE) {
        rc = want ? nr_err_set(NR_EFORMAT, "store: check: %s: no answer", what) : NR_OK;
    } else {
        rc = db_fail(s, rc, what);
        if (rc == NR_EINTERNAL || rc == NR_EINVAL)
            rc = nr_err_set(NR_EFORMAT, "store: check: %s: %s", what, sqlite3_errmsg(s->db));
    }
    sqlite3_finalize(st);
    return rc;
}

/* I1 and I2, one document at a time so each text is read once. */
static int check_documents(struct nr_store *s)
{
    sqlite3_stmt *ds = NULL, *cs = NULL;
    int rc;

    rc = sqlite3_prepare_v2(s->db, "SELECT id, text, text_bytes, n_chunks FROM documents", -1, &ds,
                            NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT ordinal, byte_start, byte_end, text FROM chunks"
                                " WHERE document_id = ?1 ORDER BY ordinal",
                                -1, &cs, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(s, rc, "check: documents");
        goto done;
    }
    while ((rc = sqlite3_step(ds)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(ds, 0);
        const unsigned char *text = sqlite3_column_text(ds, 1);
        int64_t len = sqlite3_column_bytes(ds, 1);
        int64_t n_chunks = sqlite3_column_int64(ds, 3), n = 0;

        if (!text) {
            rc = nr_err_set(NR_ENOMEM, "store: check: out of memory");
            goto done;
        }
        if (len != sqlite3_column_int64(ds, 2)) {
            rc = nr_err_set(NR_EFORMAT, "store: check: document %lld: text length mismatch",
                            (long long)id);
            goto done;
        }
        sqlite3_bind_int64(cs, 1, id);
        while ((rc = sqlite3_step(cs)) == SQLITE_ROW) {
            int64_t ord = sqlite3_column_int64(cs, 0);
            int64_t a = sqlite3_column_int64(cs, 1), b = sqlite3_column_int64(cs, 2);
            const void *ct = sqlite3_column_blob(cs, 3);
            int64_t cn = sqlite3_column_bytes(cs, 3);
            if (ord != n || a < 0 || a > b || b > len || cn != b - a ||
                (cn && (!ct || memcmp(ct, text + a, (size_t)cn) != 0))) {
                rc = nr_err_set(NR_EFORMAT,
                                "store: check: document %lld chunk %lld: bad ordinal, range or "
                                "text",
                                (long long)id, (long long)ord);
                goto done;
            }
            n++;
        }
        if (rc != SQLITE_DONE) {
            rc = db_fail(s, rc, "check: chunks");
            goto done;
        }
        sqlite3_reset(cs);
        if (n != n_chunks) {
            rc = nr_err_set(NR_EFORMAT, "store: check: document %lld has %lld chunks, says %lld",
                            (long long)id, (long long)n, (long long)n_chunks);
            goto done;
        }
    }
    rc = rc == SQLITE_DONE ? NR_OK : db_fail(s, rc, "check: documents");
done:
    sqlite3_finalize(cs);
    sqlite3_finalize(ds);
    return rc;
}

/*
 * The FTS index against the chunk text, posting by posting. FTS5's own
 * 'integrity-check' in 3.40 checks the index's internal consistency but not
 * that an external-content index matches its content table, so: index the
 * chunk text again into a temporary FTS5 table with the same tokenizer and
 * compare every (term, chunk, offset) of the two through fts5vocab. Slow
 * (it tokenizes everything) and exact. The temporary tables live in this
 * transaction's temp schema and are dropped (or rolled back) with it.
 */
static int check_fts_content(struct nr_store *s)
{
    int rc;
    if ((rc =
             exec_sql(s,
                      "CREATE VIRTUAL TABLE temp.nr_check_fts USING fts5(text,"
                      "  tokenize = 'unicode61 remove_diacritics 2');"
                      "INSERT INTO temp.nr_check_fts(rowid, text) SELECT id, text FROM main.chunks;"
                      "CREATE VIRTUAL TABLE temp.nr_check_v1"
                      "  USING fts5vocab(main, chunks_fts, instance);"
                      "CREATE VIRTUAL TABLE temp.nr_check_v2"
                      "  USING fts5vocab(temp, nr_check_fts, instance);",
                      "check: re-indexing the chunks")))
        return rc;
    if ((rc = check_query(s,
                          "SELECT count(*) FROM (SELECT term, doc, offset FROM temp.nr_check_v1"
                          " EXCEPT SELECT term, doc, offset FROM temp.nr_check_v2)",
                          NULL, "full-text postings without their chunk text")) ||
        (rc = check_query(s,
                          "SELECT count(*) FROM (SELECT term, doc, offset FROM temp.nr_check_v2"
                          " EXCEPT SELECT term, doc, offset FROM temp.nr_check_v1)",
                          NULL, "chunk text missing from the full-text index")))
        return rc;
    return exec_sql(s,
                    "DROP TABLE temp.nr_check_v1; DROP TABLE temp.nr_check_v2;"
                    " DROP TABLE temp.nr_check_fts;",
                    "check: dropping the temporary index");
}

static int check_body(struct nr_store *s, void *arg)
{
    int rc;
    (void)arg;
    if ((rc = check_query(s, "PRAGMA integrity_check", "ok", "integrity_check")) ||
        (rc = check_query(s, "SELECT count(*) FROM pragma_foreign_key_check", NULL,
                          "foreign keys")) ||
        (rc = check_query(s, "INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')", NULL,
                          "full-text index")) ||
        (rc = check_query(s,
                          "SELECT (SELECT count(*) FROM chunks_fts_docsize) -"
                          " (SELECT count(*) FROM chunks)",
                          NULL, "full-text entries vs chunks")) ||
        (rc = check_query(s,
                          "SELECT count(*) FROM chunks c WHERE NOT EXISTS"
                          " (SELECT 1 FROM chunks_fts_docsize f WHERE f.id = c.id)",
                          NULL, "chunks without a full-text entry")) ||
        (rc = check_query(s,
                          "SELECT count(*) FROM chunks c WHERE NOT EXISTS"
                          " (SELECT 1 FROM vectors v WHERE v.chunk_id = c.id)",
                          NULL, "chunks without a vector")) ||
        (rc = check_query(s, "SELECT count(*) FROM vectors WHERE length(blob) != 4 * dim", NULL,
                          "vector lengths")) ||
        (rc = check_query(s,
                          "SELECT count(*) FROM (SELECT c.document_id FROM chunks c"
                          " JOIN vectors v ON v.chunk_id = c.id GROUP BY c.document_id"
                          " HAVING count(DISTINCT v.model_id) > 1 OR count(DISTINCT v.dim) > 1)",
                          NULL, "documents with mixed vector models")))
        return rc;
    if ((rc = check_documents(s)))
        return rc;
    return check_fts_content(s);
}

int nr_store_check(struct nr_store *s)
{
    /* A write transaction: the FTS integrity-check is an INSERT (it writes nothing). */
    return run_txn(s, 1, "check", check_body, NULL);
}

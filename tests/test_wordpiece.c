/*
 * nr_wordpiece against Hugging Face: tests/fixtures/wordpiece_ids.json holds
 * the fast tokenizer's ids and byte offsets (truncated at 256, plus the
 * untruncated ids) for 300+ texts and 5 option variants, made by
 * scripts/fixtures/make_wordpiece_fixtures.py. The real vocab comes from
 * models/all-MiniLM-L6-v2 (fetched by setup): if it is missing the tests fail.
 *
 * Where HF's two tokenizers disagree (the fixture's "slow_ids"), we follow the
 * fast one (what sentence-transformers runs). Seen in the fixture:
 *   - word-final capital sigma: slow lowercases with Python's final-sigma rule
 *     ("ΟΔΟΣ" -> ... "##ος"), fast per char ("##ο", "##σ");
 *   - U+2B820..U+2B91F: CJK for the slow tokenizer only (fast's range starts
 *     at U+2B920);
 *   - unassigned code points and noncharacters (U+FFFF, U+FDD0, Unicode 16
 *     letters): slow drops them as "C*", fast keeps them ([UNK]);
 *   - Unicode version skew: Cf added after the fast tokenizer's tables
 *     (U+0890, U+08E2, U+13430) are dropped by slow only; U+1734, U+11938,
 *     U+111C9 change category or decomposition between the two;
 *   - "[CL\xffS]": slow cleans U+FFFD before matching special tokens and finds
 *     [CLS]; fast matches on the raw text and does not;
 *   - strip_accents off: slow NFC-composes first, so U+1FEF becomes "`" and
 *     splits as punctuation; fast keeps U+1FEF.
 */
#include "nr_test.h"

#include "nr_err.h"
#include "nr_mem.h"
#include "nr_wordpiece.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#define FIX_MAX 256 /* max_length the fixture was made with */

static struct nr_wordpiece *g_wp;
static json_t *g_fix;

struct sample {
    char *label;
    char *bytes;
    size_t len;
    json_t *e; /* borrowed from g_fix */
};

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The text of a fixture entry: "text" (UTF-8, may hold NUL) or "bytes_hex". */
static int sample_get(json_t *e, struct sample *s)
{
    json_t *t = json_object_get(e, "text"), *h = json_object_get(e, "bytes_hex");
    s->e = e;
    s->label = (char *)json_string_value(json_object_get(e, "label"));
    if (t) {
        s->len = json_string_length(t);
        s->bytes = malloc(s->len + 1);
        memcpy(s->bytes, json_string_value(t), s->len);
        return 0;
    }
    const char *x = json_string_value(h);
    if (!x)
        return -1;
    s->len = strlen(x) / 2;
    s->bytes = malloc(s->len + 1);
    for (size_t i = 0; i < s->len; i++)
        s->bytes[i] = (char)(hexval(x[2 * i]) * 16 + hexval(x[2 * i + 1]));
    return 0;
}

/* Encode s with wp at max_length FIX_MAX and compare with the entry; returns
 * the number of mismatching fields (reported through NR_CHECK_MSG). */
static int check_entry(const struct nr_wordpiece *wp, const struct sample *s, const char *variant)
{
    int32_t ids[FIX_MAX], st[FIX_MAX], en[FIX_MAX];
    int n = 0, total = 0, bad = 0;
    json_t *jids = json_object_get(s->e, "ids"), *joff = json_object_get(s->e, "offsets");
    json_t *jfull = json_object_get(s->e, "ids_full");
    int rc = nr_wordpiece_encode(wp, s->bytes, s->len, ids, st, en, FIX_MAX, &n, &total);
    NR_CHECK_MSG(rc == NR_OK, "%s/%s: encode failed: %s", variant, s->label, nr_err_msg());
    if (rc)
        return 1;
    if ((size_t)n != json_array_size(jids)) {
        NR_CHECK_MSG(0, "%s/%s: %d ids, expected %zu", variant, s->label, n, json_array_size(jids));
        return 1;
    }
    for (int i = 0; i < n; i++) {
        long long want = json_integer_value(json_array_get(jids, (size_t)i));
        json_t *o = json_array_get(joff, (size_t)i);
        long long ws = json_integer_value(json_array_get(o, 0));
        long long we = json_integer_value(json_array_get(o, 1));
        if (ids[i] != want) {
            NR_CHECK_MSG(0, "%s/%s: id[%d] = %d (%s), expected %lld (%s)", variant, s->label, i,
                         ids[i], nr_wordpiece_token(wp, ids[i]), want,
                         nr_wordpiece_token(wp, (int)want));
            return 1;
        }
        if (st[i] != ws || en[i] != we) {
            NR_CHECK_MSG(0, "%s/%s: offsets[%d] = [%d,%d), expected [%lld,%lld)", variant, s->label,
                         i, st[i], en[i], ws, we);
            bad++;
            break;
        }
    }
    if ((size_t)total != json_array_size(jfull)) {
        NR_CHECK_MSG(0, "%s/%s: n_total %d, expected %zu", variant, s->label, total,
                     json_array_size(jfull));
        bad++;
    }
    /* Untruncated: every id of ids_full. */
    size_t nf = json_array_size(jfull);
    int32_t *all = malloc((nf + 2) * sizeof *all);
    int m = 0;
    rc = nr_wordpiece_encode(wp, s->bytes, s->len, all, NULL, NULL, (int)nf + 2, &m, NULL);
    if (rc || (size_t)m != nf) {
        NR_CHECK_MSG(0, "%s/%s: untruncated gives %d ids, expected %zu", variant, s->label, m, nf);
        bad++;
    } else {
        for (size_t i = 0; i < nf; i++) {
            if (all[i] != json_integer_value(json_array_get(jfull, i))) {
                NR_CHECK_MSG(0, "%s/%s: untruncated id[%zu] differs", variant, s->label, i);
                bad++;
                break;
            }
        }
    }
    free(all);
    return bad;
}

static int for_each_text(json_t *texts, const struct nr_wordpiece *wp, const char *variant)
{
    int bad = 0;
    for (size_t i = 0; i < json_array_size(texts); i++) {
        struct sample s;
        if (sample_get(json_array_get(texts, i), &s)) {
            NR_CHECK_MSG(0, "fixture entry %zu has no text", i);
            bad++;
            continue;
        }
        bad += check_entry(wp, &s, variant) != 0;
        free(s.bytes);
    }
    return bad;
}

/* ---------------------------------------------------------------- setup */

static void test_setup(void)
{
    const char *vocab = nr_test_model_path("all-MiniLM-L6-v2/vocab.txt");
    json_error_t jerr;
    int rc = nr_wordpiece_load(vocab, NULL, &g_wp);
    NR_CHECK_MSG(rc == NR_OK, "cannot load %s (run scripts/fetch_models.sh): %s", vocab,
                 nr_err_msg());
    g_fix = json_load_file(nr_test_src_path("tests/fixtures/wordpiece_ids.json"), JSON_ALLOW_NUL,
                           &jerr);
    NR_CHECK_MSG(g_fix != NULL, "cannot read fixture: %s (line %d)", jerr.text, jerr.line);
}

static int ready(void)
{
    if (!g_wp || !g_fix) {
        NR_CHECK_MSG(0, "vocab or fixture missing (see test_setup)");
        return 0;
    }
    return 1;
}

/* The exception tables in wordpiece.c bridge HF's Unicode data and
 * utf8proc's as of Unicode 15.0; a newer utf8proc needs a new probe. */
static void test_utf8proc_version(void)
{
    int major = 0, minor = 0;
    sscanf(utf8proc_unicode_version(), "%d.%d", &major, &minor);
    NR_CHECK_MSG(major < 15 || (major == 15 && minor == 0),
                 "utf8proc has Unicode %s: rerun make_wordpiece_fixtures.py --probe and update "
                 "the tables in src/tok/wordpiece.c",
                 utf8proc_unicode_version());
}

static void test_vocab_basics(void)
{
    if (!ready())
        return;
    NR_CHECK_INT(nr_wordpiece_vocab_size(g_wp), 30522);
    NR_CHECK_INT(nr_wordpiece_pad_id(g_wp), 0);
    NR_CHECK_INT(nr_wordpiece_unk_id(g_wp), 100);
    NR_CHECK_INT(nr_wordpiece_cls_id(g_wp), 101);
    NR_CHECK_INT(nr_wordpiece_sep_id(g_wp), 102);
    NR_CHECK_INT(nr_wordpiece_token_id(g_wp, "[MASK]"), 103);
    NR_CHECK_INT(nr_wordpiece_token_id(g_wp, "the"), 1996);
    NR_CHECK_INT(nr_wordpiece_token_id(g_wp, "##ing"), 2075);
    NR_CHECK_INT(nr_wordpiece_token_id(g_wp, "no-such-token"), -1);
    NR_CHECK_INT(nr_wordpiece_token_id(g_wp, ""), -1);
    NR_CHECK(strcmp(nr_wordpiece_token(g_wp, 2075), "##ing") == 0);
    NR_CHECK(strcmp(nr_wordpiece_token(g_wp, 30521), "##～") == 0);
    NR_CHECK(nr_wordpiece_token(g_wp, -1) == NULL);
    NR_CHECK(nr_wordpiece_token(g_wp, 30522) == NULL);
    for (int id = 0; id < nr_wordpiece_vocab_size(g_wp); id++)
        if (nr_wordpiece_token_id(g_wp, nr_wordpiece_token(g_wp, id)) != id) {
            NR_CHECK_MSG(0, "token %d does not round-trip", id);
            break;
        }
}

/* ---------------------------------------------------------------- fixtures */

static void test_fixture_default(void)
{
    if (!ready())
        return;
    json_t *texts = json_object_get(g_fix, "texts");
    NR_CHECK(json_array_size(texts) >= 250);
    NR_CHECK_INT(json_integer_value(json_object_get(g_fix, "max_length")), FIX_MAX);
    int bad = for_each_text(texts, g_wp, "default");
    printf("  %zu texts, %d mismatching\n", json_array_size(texts), bad);
}

static void test_fixture_variants(void)
{
    if (!ready())
        return;
    json_t *vs = json_object_get(g_fix, "variants");
    NR_CHECK(json_array_size(vs) >= 5);
    for (size_t v = 0; v < json_array_size(vs); v++) {
        json_t *var = json_array_get(vs, v), *o = json_object_get(var, "opts");
        const char *name = json_string_value(json_object_get(var, "name"));
        struct nr_wordpiece_opts opts;
        struct nr_wordpiece *wp = NULL;
        opts.lowercase = (int)json_integer_value(json_object_get(o, "lowercase"));
        opts.strip_accents = (int)json_integer_value(json_object_get(o, "strip_accents"));
        opts.chinese_chars = (int)json_integer_value(json_object_get(o, "chinese_chars"));
        opts.max_chars_per_word = (int)json_integer_value(json_object_get(o, "max_chars_per_word"));
        int rc = nr_wordpiece_load(nr_test_model_path("all-MiniLM-L6-v2/vocab.txt"), &opts, &wp);
        NR_CHECK_MSG(rc == NR_OK, "%s: %s", name, nr_err_msg());
        if (rc)
            continue;
        json_t *texts = json_object_get(var, "texts");
        int bad = for_each_text(texts, wp, name);
        printf("  %-13s %zu texts, %d mismatching\n", name, json_array_size(texts), bad);
        nr_wordpiece_free(wp);
    }
}

/* The vocabulary as llama.cpp's convert_hf_to_gguf.py writes it
 * (BertModel.set_vocab): continuations lose "##", other tokens gain U+2581,
 * special (CONTROL) tokens are kept. `old` = the older converter, which kept
 * every "[...]" token (so "[unused0]" too). */
static char **gguf_tokens(const struct nr_wordpiece *wp, int old, size_t *lens)
{
    int n = nr_wordpiece_vocab_size(wp);
    char **out = calloc((size_t)n, sizeof *out);
    for (int i = 0; i < n; i++) {
        const char *t = nr_wordpiece_token(wp, i);
        size_t l = strlen(t);
        int control = !strcmp(t, "[PAD]") || !strcmp(t, "[UNK]") || !strcmp(t, "[CLS]") ||
                      !strcmp(t, "[SEP]") || !strcmp(t, "[MASK]");
        if (old)
            control = l >= 2 && t[0] == '[' && t[l - 1] == ']';
        out[i] = malloc(l + 4);
        if (control)
            memcpy(out[i], t, l + 1);
        else if (l >= 2 && t[0] == '#' && t[1] == '#')
            memcpy(out[i], t + 2, l - 1);
        else {
            memcpy(out[i], "\xE2\x96\x81", 3);
            memcpy(out[i] + 3, t, l + 1);
        }
        lens[i] = strlen(out[i]);
    }
    return out;
}

static void test_gguf_vocab_matches(void)
{
    if (!ready())
        return;
    int n = nr_wordpiece_vocab_size(g_wp);
    for (int old = 0; old <= 1; old++) {
        size_t *lens = calloc((size_t)n, sizeof *lens);
        char **toks = gguf_tokens(g_wp, old, lens);
        struct nr_wordpiece *wp = NULL;
        int rc = nr_wordpiece_from_tokens((const char *const *)toks, lens, n, 1, NULL, &wp);
        NR_CHECK_MSG(rc == NR_OK, "gguf vocab (old=%d): %s", old, nr_err_msg());
        if (!rc) {
            for (int i = 0; i < n; i++)
                if (strcmp(nr_wordpiece_token(wp, i), nr_wordpiece_token(g_wp, i)) != 0) {
                    NR_CHECK_MSG(0, "gguf token %d maps to '%s', vocab.txt has '%s'", i,
                                 nr_wordpiece_token(wp, i), nr_wordpiece_token(g_wp, i));
                    break;
                }
            NR_CHECK_INT(nr_wordpiece_cls_id(wp), 101);
            NR_CHECK_INT(nr_wordpiece_pad_id(wp), 0);
            int bad = for_each_text(json_object_get(g_fix, "texts"), wp, old ? "gguf-old" : "gguf");
            NR_CHECK_INT(bad, 0);
        }
        nr_wordpiece_free(wp);
        for (int i = 0; i < n; i++)
            free(toks[i]);
        free(toks);
        free(lens);
    }
    /* Plain token list (vocab.txt form), lens NULL: NUL-terminated strings. */
    const char **plain = calloc((size_t)n, sizeof *plain);
    struct nr_wordpiece *wp = NULL;
    for (int i = 0; i < n; i++)
        plain[i] = nr_wordpiece_token(g_wp, i);
    NR_CHECK_INT(nr_wordpiece_from_tokens(plain, NULL, n, 0, NULL, &wp), NR_OK);
    if (wp)
        NR_CHECK_INT(for_each_text(json_object_get(g_fix, "texts"), wp, "from_tokens"), 0);
    nr_wordpiece_free(wp);
    free(plain);
}

/* ---------------------------------------------------------------- bad vocabularies */

static char g_tmpdir[256];

static const char *write_tmp(const char *name, const void *data, size_t len)
{
    static char path[sizeof g_tmpdir + 64];
    snprintf(path, sizeof path, "%s/%s", g_tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return path;
    if (len)
        fwrite(data, 1, len, f);
    fclose(f);
    return path;
}

static void test_malformed_vocab(void)
{
    static const char base[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n##lo\n";
    char long_line[1100 + sizeof base];
    struct {
        const char *name;
        const char *data;
        size_t len;
        const char *must_contain;
    } cases[] = {
        {"empty.txt", "", 0, "empty vocab file"},
        {"no_unk.txt", "[PAD]\n[CLS]\n[SEP]\nhello\n", 0, "no [UNK]"},
        {"no_cls.txt", "[PAD]\n[UNK]\n[SEP]\nhello\n", 0, "no [CLS]"},
        {"no_sep.txt", "[UNK]\n[CLS]\nhello\n", 0, "no [SEP]"},
        {"bad_utf8.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nca\xff\xfe\n", 0, "line 5: invalid UTF-8"},
        {"overlong.txt", "[UNK]\n[CLS]\n[SEP]\n\xc0\xaf\n", 0, "line 4: invalid UTF-8"},
        {"surrogate.txt", "[UNK]\n[CLS]\n[SEP]\nx\xed\xa0\x80\n", 0, "line 4: invalid UTF-8"},
        {"dup.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\nhello\n", 0,
         "line 7: duplicate token 'hello' (first at vocab line 5)"},
        {"long.txt", NULL, 0, "line 5: token longer than 1024 bytes"},
        {"empty_line.txt", "[UNK]\n[CLS]\n\n[SEP]\n", 0, "line 3: empty token"},
        {"nul.txt", "[UNK]\n[CLS]\n[SEP]\na\0b\n", 22, "line 4: NUL byte"},
    };
    const int ncase = (int)(sizeof cases / sizeof cases[0]);
    char msgs[16][256];
    struct nr_wordpiece *wp = (struct nr_wordpiece *)1;

    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/nr_wordpiece_XXXXXX");
    if (!mkdtemp(g_tmpdir)) {
        NR_CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    memcpy(long_line, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n", 24);
    memset(long_line + 24, 'a', 1025);
    long_line[24 + 1025] = '\n';
    cases[8].data = long_line;
    cases[8].len = 24 + 1026;

    for (int i = 0; i < ncase; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].data);
        const char *p = write_tmp(cases[i].name, cases[i].data, len);
        wp = (struct nr_wordpiece *)1;
        int rc = nr_wordpiece_load(p, NULL, &wp);
        NR_CHECK_MSG(rc == NR_EFORMAT, "%s: rc %d (%s)", cases[i].name, rc, nr_err_msg());
        NR_CHECK_MSG(wp == NULL, "%s: *out not cleared", cases[i].name);
        NR_CHECK_MSG(strstr(nr_err_msg(), cases[i].must_contain) != NULL,
                     "%s: message '%s' lacks '%s'", cases[i].name, nr_err_msg(),
                     cases[i].must_contain);
        snprintf(msgs[i], sizeof msgs[i], "%s", nr_err_msg());
        for (int j = 0; j < i; j++)
            NR_CHECK_MSG(strcmp(msgs[i], msgs[j]) != 0, "%s and %s give the same message",
                         cases[i].name, cases[j].name);
        unlink(p);
    }

    /* The good base file loads; CRLF line ends are accepted. */
    const char *p = write_tmp("ok.txt", base, strlen(base));
    NR_CHECK_INT(nr_wordpiece_load(p, NULL, &wp), NR_OK);
    NR_CHECK_INT(nr_wordpiece_token_id(wp, "##lo"), 5);
    NR_CHECK_INT(nr_wordpiece_pad_id(wp), 0);
    nr_wordpiece_free(wp);
    p = write_tmp("crlf.txt", "[UNK]\r\n[CLS]\r\n[SEP]\r\nab", 23);
    NR_CHECK_INT(nr_wordpiece_load(p, NULL, &wp), NR_OK);
    if (wp) {
        NR_CHECK_INT(nr_wordpiece_vocab_size(wp), 4);
        NR_CHECK_INT(nr_wordpiece_token_id(wp, "[CLS]"), 1);
        NR_CHECK_INT(nr_wordpiece_token_id(wp, "ab"), 3);
        NR_CHECK_INT(nr_wordpiece_pad_id(wp), -1);
    }
    nr_wordpiece_free(wp);
    unlink(p);
    unlink(write_tmp("ok.txt", "", 0));

    /* Missing file, too many lines, too large a file. */
    char path[sizeof g_tmpdir + 32];
    snprintf(path, sizeof path, "%s/none.txt", g_tmpdir);
    NR_CHECK_INT(nr_wordpiece_load(path, NULL, &wp), NR_ENOTFOUND);
    {
        size_t n = ((size_t)NR_WORDPIECE_MAX_TOKENS + 1) * 2;
        char *big = malloc(n);
        for (size_t i = 0; i < n; i += 2) {
            big[i] = 'a';
            big[i + 1] = '\n';
        }
        p = write_tmp("many.txt", big, n);
        free(big);
        NR_CHECK_INT(nr_wordpiece_load(p, NULL, &wp), NR_EFORMAT);
        NR_CHECK_MSG(strstr(nr_err_msg(), "line 4194305: more than") != NULL, "%s", nr_err_msg());
        unlink(p);
    }
    {
        snprintf(path, sizeof path, "%s/huge.txt", g_tmpdir);
        FILE *f = fopen(path, "wb");
        NR_CHECK(f && ftruncate(fileno(f), (off_t)NR_WORDPIECE_MAX_FILE + 1) == 0);
        if (f)
            fclose(f);
        NR_CHECK_INT(nr_wordpiece_load(path, NULL, &wp), NR_EFORMAT);
        NR_CHECK_MSG(strstr(nr_err_msg(), "larger than") != NULL, "%s", nr_err_msg());
        unlink(path);
    }
    rmdir(g_tmpdir);
}

static void test_bad_token_lists(void)
{
    struct nr_wordpiece *wp = NULL;
    struct nr_wordpiece_opts o;
    const char *ok[] = {"[UNK]", "[CLS]", "[SEP]", "\xE2\x96\x81hi", "lo"};
    const char *dup[] = {"[UNK]", "[CLS]", "[SEP]", "\xE2\x96\x81lo", "lo", "lo"};
    const char *bare[] = {"[UNK]", "[CLS]", "[SEP]", "\xE2\x96\x81"};

    NR_CHECK_INT(nr_wordpiece_from_tokens(ok, NULL, 5, 1, NULL, &wp), NR_OK);
    if (wp) {
        NR_CHECK_INT(nr_wordpiece_token_id(wp, "hi"), 3);
        NR_CHECK_INT(nr_wordpiece_token_id(wp, "##lo"), 4);
        NR_CHECK_INT(nr_wordpiece_pad_id(wp), -1);
        int32_t ids[8];
        int n = 0, total = 0;
        /* [MASK] is not in this vocab: plain punctuation and letters. */
        NR_CHECK_INT(nr_wordpiece_encode(wp, "hilo [MASK]", 11, ids, NULL, NULL, 8, &n, &total),
                     NR_OK);
        NR_CHECK_INT(n, 7); /* [CLS] hi ##lo [UNK]x3 [SEP]: "[", "mask", "]" are unknown */
        NR_CHECK_INT(total, 7);
        NR_CHECK_INT(ids[1], 3);
        NR_CHECK_INT(ids[2], 4);
        NR_CHECK_INT(ids[3], 0);
        nr_wordpiece_free(wp);
    }
    /* Both "lo" are the continuation "##lo" in vocab.txt form. */
    NR_CHECK_INT(nr_wordpiece_from_tokens(dup, NULL, 6, 1, NULL, &wp), NR_EFORMAT);
    NR_CHECK_MSG(strstr(nr_err_msg(), "token 5: duplicate token '##lo' (first at token 4)"), "%s",
                 nr_err_msg());
    NR_CHECK_INT(nr_wordpiece_from_tokens(bare, NULL, 4, 1, NULL, &wp), NR_EFORMAT);
    NR_CHECK_MSG(strstr(nr_err_msg(), "token 3: empty token"), "%s", nr_err_msg());
    NR_CHECK_INT(nr_wordpiece_from_tokens(ok, NULL, 0, 0, NULL, &wp), NR_EFORMAT);
    NR_CHECK_INT(nr_wordpiece_from_tokens(NULL, NULL, 3, 0, NULL, &wp), NR_EINVAL);

    nr_wordpiece_opts_default(&o);
    o.strip_accents = 2;
    NR_CHECK_INT(nr_wordpiece_from_tokens(ok, NULL, 5, 1, &o, &wp), NR_EINVAL);
    nr_wordpiece_opts_default(&o);
    o.max_chars_per_word = 0;
    NR_CHECK_INT(nr_wordpiece_from_tokens(ok, NULL, 5, 1, &o, &wp), NR_EINVAL);
    o.max_chars_per_word = NR_WORDPIECE_MAX_WORD_CHARS + 1;
    NR_CHECK_INT(nr_wordpiece_from_tokens(ok, NULL, 5, 1, &o, &wp), NR_EINVAL);
    o.max_chars_per_word = NR_WORDPIECE_MAX_WORD_CHARS;
    NR_CHECK_INT(nr_wordpiece_from_tokens(ok, NULL, 5, 1, &o, &wp), NR_OK);
    nr_wordpiece_free(wp);
}

/* Allocation failure at every step of a load: a clean error, nothing held. */
static void test_load_alloc_failures(void)
{
    const char *vocab = nr_test_model_path("all-MiniLM-L6-v2/vocab.txt");
    size_t before = nr_mem_held();
    int done = 0;
    for (long k = 1; k < 100 && !done; k++) {
        struct nr_wordpiece *wp = NULL;
        nr_mem_fail_after(k);
        int rc = nr_wordpiece_load(vocab, NULL, &wp);
        nr_mem_fail_after(0);
        if (rc == NR_OK) {
            done = 1;
            nr_wordpiece_free(wp);
        } else {
            NR_CHECK_MSG(rc == NR_ENOMEM, "failure at allocation %ld: rc %d (%s)", k, rc,
                         nr_err_msg());
            NR_CHECK(wp == NULL);
        }
        NR_CHECK_INT(nr_mem_held(), before);
    }
    NR_CHECK(done);
}

/* ---------------------------------------------------------------- encode contract */

static void test_limits(void)
{
    int32_t ids[4], st[4], en[4];
    int n = -1, total = -1;
    if (!ready())
        return;
    const char *t = "The quick brown fox";
    NR_CHECK_INT(nr_wordpiece_encode(g_wp, t, strlen(t), ids, st, en, 2, &n, &total), NR_OK);
    NR_CHECK_INT(n, 2);
    NR_CHECK_INT(total, 6);
    NR_CHECK_INT(ids[0], 101);
    NR_CHECK_INT(ids[1], 102);
    NR_CHECK(st[0] == 0 && en[0] == 0 && st[1] == 0 && en[1] == 0);
    NR_CHECK_INT(nr_wordpiece_encode(g_wp, t, strlen(t), ids, st, en, 3, &n, &total), NR_OK);
    NR_CHECK_INT(n, 3);
    NR_CHECK_INT(ids[1], 1996); /* "the" */
    NR_CHECK(st[1] == 0 && en[1] == 3);
    NR_CHECK_INT(ids[2], 102);
    NR_CHECK_INT(nr_wordpiece_encode(g_wp, "", 0, ids, NULL, NULL, 4, &n, &total), NR_OK);
    NR_CHECK(n == 2 && total == 2);
    NR_CHECK_INT(nr_wordpiece_encode(g_wp, NULL, 0, ids, NULL, NULL, 4, &n, NULL), NR_OK);
    NR_CHECK_INT(nr_wordpiece_encode(g_wp, t, strlen(t), ids, NULL, NULL, 1, &n, &total),
                 NR_EINVAL);
    NR_CHECK_INT(n, 0);
    NR_CHECK_INT(nr_wordpiece_encode(g_wp, t, strlen(t), NULL, NULL, NULL, 4, &n, &total),
                 NR_EINVAL);
    /* The length is checked before a byte is read. */
    NR_CHECK_INT(nr_wordpiece_encode(g_wp, t, (size_t)NR_WORDPIECE_MAX_TEXT + 1, ids, NULL, NULL, 4,
                                     &n, &total),
                 NR_ELIMIT);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* The invariants every output satisfies (also checked by fuzz_wordpiece). */
static int check_invariants(const struct nr_wordpiece *wp, const char *text, size_t len,
                            int max_ids)
{
    int32_t *ids = malloc((size_t)max_ids * 4), *st = malloc((size_t)max_ids * 4),
            *en = malloc((size_t)max_ids * 4);
    int n = 0, total = 0, bad = 0;
    if (nr_wordpiece_encode(wp, text, len, ids, st, en, max_ids, &n, &total) != NR_OK)
        bad = 1;
    else if (n < 2 || n > max_ids || total < n || (total <= max_ids && total != n) ||
             (total > max_ids && n != max_ids))
        bad = 2;
    else if (ids[0] != nr_wordpiece_cls_id(wp) || ids[n - 1] != nr_wordpiece_sep_id(wp))
        bad = 3;
    else {
        int32_t prev = 0;
        for (int i = 1; i < n - 1 && !bad; i++) {
            if (ids[i] < 0 || ids[i] >= nr_wordpiece_vocab_size(wp))
                bad = 4;
            else if (st[i] < prev || st[i] >= en[i] || (size_t)en[i] > len)
                bad = 5;
            prev = st[i];
        }
    }
    free(ids);
    free(st);
    free(en);
    return bad;
}

static void test_random_bytes(void)
{
    char buf[2048];
    if (!ready())
        return;
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = rnd() % sizeof buf;
        int mode = iter % 4;
        for (size_t i = 0; i < len; i++) {
            uint64_t r = rnd();
            if (mode == 0)
                buf[i] = (char)r; /* any byte */
            else if (mode == 1)
                buf[i] = (char)(0x80 | (r & 0x7F)); /* only high bytes */
            else if (mode == 2)
                buf[i] = "ab [CLS]\xc3\xa9\xe4\xb8\xad!  \xcc\x81"[r % 17]; /* UTF-8 pieces */
            else
                buf[i] = (r & 3) ? 'a' + (char)(r % 26) : (char)(r >> 8);
        }
        int max_ids = 2 + (int)(rnd() % 300);
        int bad = check_invariants(g_wp, buf, len, max_ids);
        if (bad) {
            NR_CHECK_MSG(0, "iteration %d (len %zu, max_ids %d): invariant %d broken", iter, len,
                         max_ids, bad);
            break;
        }
    }
}

/* Truncation keeps a prefix: encoding with fewer ids gives the first pieces
 * of the longer encoding, and [SEP] last. */
static void test_truncation_prefix(void)
{
    int32_t full[600], part[600];
    int nf = 0, np = 0, total = 0;
    if (!ready())
        return;
    const char *t = "Ünïcödé tokenization, with un-believably long words like "
                    "antidisestablishmentarianism and 中文 text repeated. Ünïcödé tokenization, "
                    "with un-believably long words like antidisestablishmentarianism and 中文.";
    NR_CHECK_INT(nr_wordpiece_encode(g_wp, t, strlen(t), full, NULL, NULL, 600, &nf, &total),
                 NR_OK);
    NR_CHECK_INT(nf, total);
    for (int m = 2; m <= nf + 1; m++) {
        NR_CHECK_INT(nr_wordpiece_encode(g_wp, t, strlen(t), part, NULL, NULL, m, &np, &total),
                     NR_OK);
        NR_CHECK_INT(total, nf);
        NR_CHECK_INT(np, m < nf ? m : nf);
        NR_CHECK(memcmp(part, full, (size_t)(np - 1) * sizeof *part) == 0);
        NR_CHECK_INT(part[np - 1], 102);
    }
}

/* encode allocates nothing: it works with every allocation failing. */
static void test_encode_no_alloc(void)
{
    int32_t ids[64];
    int n = 0;
    if (!ready())
        return;
    size_t before = nr_mem_held();
    nr_mem_fail_after(1);
    int rc = nr_wordpiece_encode(g_wp, "no allocation here, ça va? 中文", 33, ids, NULL, NULL, 64,
                                 &n, NULL);
    nr_mem_fail_after(0);
    NR_CHECK_INT(rc, NR_OK);
    NR_CHECK(n > 2);
    NR_CHECK_INT(nr_mem_held(), before);
}

struct thread_arg {
    json_t *texts;
    int bad;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < json_array_size(a->texts); i++) {
            struct sample s;
            int32_t ids[FIX_MAX];
            int n = 0;
            if (sample_get(json_array_get(a->texts, i), &s))
                continue;
            json_t *want = json_object_get(s.e, "ids");
            nr_wordpiece_encode(g_wp, s.bytes, s.len, ids, NULL, NULL, FIX_MAX, &n, NULL);
            if ((size_t)n != json_array_size(want))
                a->bad++;
            else
                for (int k = 0; k < n; k++)
                    if (ids[k] != json_integer_value(json_array_get(want, (size_t)k))) {
                        a->bad++;
                        break;
                    }
            free(s.bytes);
        }
    }
    return NULL;
}

static void test_concurrent_encode(void)
{
    pthread_t th[4];
    struct thread_arg args[4];
    if (!ready())
        return;
    for (int i = 0; i < 4; i++) {
        args[i].texts = json_object_get(g_fix, "texts");
        args[i].bad = 0;
        NR_CHECK(pthread_create(&th[i], NULL, thread_main, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        NR_CHECK_INT(args[i].bad, 0);
    }
}

static void test_teardown(void)
{
    nr_wordpiece_free(g_wp);
    g_wp = NULL;
    json_decref(g_fix);
    g_fix = NULL;
}

int main(void)
{
    NR_RUN(test_setup);
    NR_RUN(test_utf8proc_version);
    NR_RUN(test_vocab_basics);
    NR_RUN(test_fixture_default);
    NR_RUN(test_fixture_variants);
    NR_RUN(test_gguf_vocab_matches);
    NR_RUN(test_malformed_vocab);
    NR_RUN(test_bad_token_lists);
    NR_RUN(test_load_alloc_failures);
    NR_RUN(test_limits);
    NR_RUN(test_random_bytes);
    NR_RUN(test_truncation_prefix);
    NR_RUN(test_encode_no_alloc);
    NR_RUN(test_concurrent_encode);
    NR_RUN(test_teardown);
    return nr_test_summary();
}

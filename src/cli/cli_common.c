#include "nr_cli.h"

#include "nr_err.h"
#include "nr_file.h"
#include "nr_store.h"

#include <errno.h>
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_EMBED "all-MiniLM-L6-v2"

/*
 * Where the default embedder is looked for, first match wins:
 *   $NANORAG_EMBED_MODEL, $NANORAG_MODELS/all-MiniLM-L6-v2,
 *   ./models/all-MiniLM-L6-v2, <binary's dir>/../models/all-MiniLM-L6-v2
 * (the last makes build/nanorag work from anywhere in a checkout).
 */
int cli_default_embed_model(char *buf, size_t cap)
{
    const char *env = getenv("NANORAG_EMBED_MODEL");
    char exe[4096];
    ssize_t n;

    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        return NR_OK;
    }
    env = getenv("NANORAG_MODELS");
    if (env && *env && nr_path_join(buf, cap, env, DEFAULT_EMBED) == NR_OK && nr_path_is_dir(buf))
        return NR_OK;
    if (nr_path_join(buf, cap, "models", DEFAULT_EMBED) == NR_OK && nr_path_is_dir(buf))
        return NR_OK;
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            if (snprintf(buf, cap, "%s/../models/%s", exe, DEFAULT_EMBED) < (int)cap &&
                nr_path_is_dir(buf))
                return NR_OK;
        }
    }
    return nr_err_set(NR_ENOTFOUND,
                      "no embedding model found: run scripts/fetch_models.sh, or pass --model "
                      "DIR|FILE.gguf, or set NANORAG_EMBED_MODEL");
}

#define DEFAULT_GEN_DIR  "smollm2-135m-instruct"
#define DEFAULT_GEN_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

/*
 * The default generation model, found like the embedder, first match wins:
 *   $NANORAG_GEN_MODEL, $NANORAG_MODELS/smollm2-135m-instruct/<file>,
 *   ./models/smollm2-135m-instruct/<file>, <binary's dir>/../models/...
 */
int cli_default_gen_model(char *buf, size_t cap)
{
    const char *env = getenv("NANORAG_GEN_MODEL");
    char exe[4096];
    ssize_t n;

    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        return NR_OK;
    }
    env = getenv("NANORAG_MODELS");
    if (env && *env &&
        snprintf(buf, cap, "%s/%s/%s", env, DEFAULT_GEN_DIR, DEFAULT_GEN_FILE) < (int)cap &&
        nr_path_is_file(buf))
        return NR_OK;
    if (snprintf(buf, cap, "models/%s/%s", DEFAULT_GEN_DIR, DEFAULT_GEN_FILE) < (int)cap &&
        nr_path_is_file(buf))
        return NR_OK;
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            if (snprintf(buf, cap, "%s/../models/%s/%s", exe, DEFAULT_GEN_DIR, DEFAULT_GEN_FILE) <
                    (int)cap &&
                nr_path_is_file(buf))
                return NR_OK;
        }
    }
    return nr_err_set(NR_ENOTFOUND,
                      "no generation model found: run scripts/fetch_models.sh, or pass --model "
                      "FILE.gguf, or set NANORAG_GEN_MODEL");
}

int cli_fail(const char *what)
{
    fprintf(stderr, "nanorag: %s: %s\n", what, nr_err_msg());
    return 1;
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

int cli_open_store(char *data, size_t cap, struct nr_store **s)
{
    char path[4096];
    const char *env = getenv("NANORAG_DATA");
    if (!data[0])
        snprintf(data, cap, "%s", env && *env ? env : "data");
    if (mkdir(data, 0755) != 0 && errno != EEXIST)
        return nr_err_set(NR_EIO, "cannot create the data directory %s: %s", data, strerror(errno));
    if (nr_path_join(path, sizeof path, data, "nanorag.db"))
        return NR_ELIMIT;
    return nr_store_open(path, s);
}

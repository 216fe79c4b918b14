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

/* The default embedder: $NANORAG_EMBED_MODEL, else models/all-MiniLM-L6-v2
 * where nr_path_find_model looks. */
int cli_default_embed_model(char *buf, size_t cap)
{
    int rc = nr_path_find_model("NANORAG_EMBED_MODEL", DEFAULT_EMBED, 1, buf, cap);
    if (rc == NR_ENOTFOUND)
        return nr_err_set(NR_ENOTFOUND,
                          "no embedding model found: run scripts/fetch_models.sh, or pass --model "
                          "DIR|FILE.gguf, or set NANORAG_EMBED_MODEL");
    return rc;
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

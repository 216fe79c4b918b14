/*
 * nanorag status: what runs where, and what memory it holds.
 *
 * Builds one JSON document (jansson keeps insertion order) and prints it as
 * indented text or, with --json, as JSON — the same document the HTTP API
 * will serve. Sections: platform (OS, Jetson model and L4T release where
 * present), cpu (model, SIMD features, kernel variant, threads), memory
 * (/proc/meminfo), gpu (build, devices, driver/runtime/cuBLAS versions,
 * cuDNN/TensorRT presence), embedder (device, precision, memory held,
 * measured single-query latency; on a GPU its name, device memory held and
 * measured tokens/s), generator (the local GGUF model: architecture,
 * quantization, weights mapped, KV cache per 4k positions, measured prefill
 * and decode tokens/s) and index (the store's vectors for the embedder: where
 * vector search runs, its memory and why not on the GPU). --device
 * cpu|cuda|auto picks the device of the embedder and the index (default:
 * $NANORAG_DEVICE, else cpu); --llm picks the generator (default: the
 * installed local model; none skips it); --data the store (never created
 * here); --no-model skips all three.
 */
#define _GNU_SOURCE
#include "nr_cli.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_gpu.h"
#include "nr_kern.h"
#include "nr_llama.h"
#include "nr_llm.h"
#include "nr_mem.h"
#include "nr_pool.h"
#include "nr_retrieve.h"
#include "nr_store.h"

#include <dlfcn.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>

/* First line of a small text file, trimmed; "" if unreadable. */
static void read_first_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    buf[0] = '\0';
    if (!f)
        return;
    if (fgets(buf, (int)cap, f)) {
        size_t n = strlen(buf);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == '\0'))
            buf[--n] = '\0';
    }
    fclose(f);
}

/* Value of "key: value" / "key=value" lines in a text file. */
static int find_field(const char *path, const char *key, char sep, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    size_t klen = strlen(key);
    int found = 0;
    buf[0] = '\0';
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        char *p;
        if (strncmp(line, key, klen) != 0)
            continue;
        p = line + klen;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != sep)
            continue;
        p++;
        while (*p == ' ' || *p == '\t' || *p == '"')
            p++;
        snprintf(buf, cap, "%s", p);
        for (size_t n = strlen(buf); n > 0 && strchr("\n\r\" ", buf[n - 1]); n--)
            buf[n - 1] = '\0';
        found = 1;
        break;
    }
    fclose(f);
    return found;
}

static long long meminfo_kib(const char *key)
{
    char v[128];
    if (!find_field("/proc/meminfo", key, ':', v, sizeof v))
        return -1;
    return strtoll(v, NULL, 10);
}

static double mib(size_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static json_t *platform_info(void)
{
    json_t *o = json_object();
    struct utsname u;
    char buf[512];

    if (uname(&u) == 0) {
        json_object_set_new(o, "arch", json_string(u.machine));
        json_object_set_new(o, "kernel", json_string(u.release));
    }
    if (find_field("/etc/os-release", "PRETTY_NAME", '=', buf, sizeof buf))
        json_object_set_new(o, "os", json_string(buf));
    read_first_line("/proc/device-tree/model", buf, sizeof buf);
    if (buf[0])
        json_object_set_new(o, "board", json_string(buf));
    read_first_line("/etc/nv_tegra_release", buf, sizeof buf);
    if (buf[0])
        json_object_set_new(o, "l4t", json_string(buf));
    return o;
}

static json_t *cpu_info(void)
{
    json_t *o = json_object();
    char buf[512];

    if (find_field("/proc/cpuinfo", "model name", ':', buf, sizeof buf) ||
        find_field("/proc/cpuinfo", "Hardware", ':', buf, sizeof buf) ||
        find_field("/proc/cpuinfo", "CPU part", ':', buf, sizeof buf))
        json_object_set_new(o, "model", json_string(buf));
    json_object_set_new(o, "threads", json_integer(nr_cpu_count()));
    json_object_set_new(o, "simd", json_string(nr_kern_cpu_features()));
    json_object_set_new(o, "kernel", json_string(nr_kern_get()->name));
    return o;
}

static json_t *memory_info(void)
{
    json_t *o = json_object();
    long long total = meminfo_kib("MemTotal"), avail = meminfo_kib("MemAvailable");
    if (total >= 0)
        json_object_set_new(o, "total_mib", json_integer(total / 1024));
    if (avail >= 0)
        json_object_set_new(o, "available_mib", json_integer(avail / 1024));
    return o;
}

static int lib_present(const char *const *names)
{
    for (; *names; names++) {
        void *h = dlopen(*names, RTLD_LAZY | RTLD_LOCAL);
        if (h) {
            dlclose(h);
            return 1;
        }
    }
    return 0;
}

static json_t *gpu_info(void)
{
    static const char *const cudnn[] = {"libcudnn.so.9", "libcudnn.so.8", "libcudnn.so", NULL};
    static const char *const trt[] = {"libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so", NULL};
    json_t *o = json_object(), *devs = json_array();
    const char *why = NULL;
    int n, drv, rt, cub;

    json_object_set_new(o, "cuda_build", json_boolean(nr_gpu_built()));
    n = nr_gpu_count(&why);
    if (n == 0 && why)
        json_object_set_new(o, "note", json_string(why));
    if (nr_gpu_built()) {
        char v[32];
        nr_gpu_versions(&drv, &rt, &cub);
        snprintf(v, sizeof v, "%d.%d", drv / 1000, (drv % 1000) / 10);
        json_object_set_new(o, "driver_cuda", json_string(drv ? v : "none"));
        snprintf(v, sizeof v, "%d.%d", rt / 1000, (rt % 1000) / 10);
        json_object_set_new(o, "runtime_cuda", json_string(rt ? v : "none"));
        snprintf(v, sizeof v, "%d.%d.%d", cub / 10000, (cub / 100) % 100, cub % 100);
        json_object_set_new(o, "cublas", json_string(cub ? v : "none"));
    }
    json_object_set_new(o, "cudnn", json_boolean(lib_present(cudnn)));
    json_object_set_new(o, "tensorrt", json_boolean(lib_present(trt)));
    for (int i = 0; i < n; i++) {
        struct nr_gpu_device d;
        json_t *dj;
        char cc[16];
        if (nr_gpu_query(i, &d))
            continue;
        dj = json_object();
        snprintf(cc, sizeof cc, "%d.%d", d.cc_major, d.cc_minor);
        json_object_set_new(dj, "name", json_string(d.name));
        json_object_set_new(dj, "compute_capability", json_string(cc));
        json_object_set_new(dj, "kind", json_string(d.integrated ? "integrated" : "discrete"));
        json_object_set_new(dj, "memory",
                            json_string(d.integrated ? "unified with CPU" : "dedicated"));
        json_object_set_new(dj, "multiprocessors", json_integer(d.multiprocessors));
        json_object_set_new(dj, "total_mib", json_integer((json_int_t)(d.total_mem >> 20)));
        json_object_set_new(dj, "free_mib", json_integer((json_int_t)(d.free_mem >> 20)));
        json_array_append_new(devs, dj);
    }
    json_object_set_new(o, "devices", devs);
    return o;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long long rss_kib(void)
{
    char v[128];
    if (!find_field("/proc/self/status", "VmRSS", ':', v, sizeof v))
        return -1;
    return strtoll(v, NULL, 10);
}

/* The embedder's section; *out keeps it open for the index section (NULL on failure). */
static json_t *embedder_info(const char *model, int threads, const char *device,
                             struct nr_embedder **out)
{
    json_t *o = json_object();
    struct nr_embed_opts opts;
    struct nr_embedder *e;
    struct nr_embedder_info in;
    double t0 = now_ms(), load_ms, lat[21];
    float *v;
    const char *q = "How do I reset the admin password on my router?";

    *out = NULL;
    nr_embed_opts_default(&opts);
    opts.threads = threads;
    opts.device = device;
    if (nr_embedder_open(model, &opts, &e)) {
        json_object_set_new(o, "error", json_string(nr_err_msg()));
        return o;
    }
    load_ms = now_ms() - t0;
    nr_embedder_info(e, &in);
    json_object_set_new(o, "model", json_string(in.model));
    json_object_set_new(o, "format", json_string(in.source));
    json_object_set_new(o, "device", json_string(in.device));
    if (in.gpu_name[0]) {
        json_object_set_new(o, "gpu", json_string(in.gpu_name));
        json_object_set_new(o, "gpu_memory_mib", json_real(mib(in.gpu_bytes)));
    }
    json_object_set_new(o, "precision", json_string(in.precision));
    json_object_set_new(o, "stored_as", json_string(in.stored));
    json_object_set_new(o, "kernel", json_string(in.kernel));
    json_object_set_new(o, "threads", json_integer(in.threads));
    json_object_set_new(o, "dim", json_integer(in.dim));
    json_object_set_new(o, "max_tokens", json_integer(in.max_seq));
    json_object_set_new(o, "weights_mib", json_real(mib(in.weight_bytes)));
    json_object_set_new(o, "workspace_mib", json_real(mib(in.workspace_bytes)));
    json_object_set_new(o, "load_ms", json_real(load_ms));
    v = nr_malloc(sizeof(float) * (size_t)in.dim);
    if (v) {
        int n = (int)(sizeof lat / sizeof lat[0]), ok = 1;
        for (int i = 0; i < n && ok; i++) {
            double s = now_ms();
            ok = nr_embedder_embed(e, &q, NULL, 1, v) == NR_OK;
            lat[i] = now_ms() - s;
        }
        if (ok) {
            qsort(lat + 1, (size_t)n - 1, sizeof lat[0], cmp_double); /* first run is warm-up */
            json_object_set_new(o, "query_ms_p50", json_real(lat[1 + (n - 1) / 2]));
        }
        nr_embedder_info(e, &in);
        if (ok && in.tokens_per_s > 0) /* GPU time of the queries above */
            json_object_set_new(o, "gpu_tokens_per_s", json_real(in.tokens_per_s));
        nr_free(v);
    }
    json_object_set_new(o, "process_rss_mib", json_integer(rss_kib() / 1024));
    *out = e;
    return o;
}

/* The local generator: what it is, what it holds, and its speed on a short
 * greedy run (8-token prompt, 16 decoded tokens; ids are arbitrary). */
static json_t *generator_info(const char *path)
{
    json_t *o = json_object();
    struct nr_llama *m = NULL;
    struct nr_llama_seq *sq = NULL;
    const struct nr_llama_info *in;
    double t0 = now_ms(), t1;
    float *logits = NULL;
    int32_t ids[8];

    json_object_set_new(o, "path", json_string(path));
    if (nr_llama_open(path, NULL, &m)) {
        json_object_set_new(o, "error", json_string(nr_err_msg()));
        return o;
    }
    in = nr_llama_info(m);
    json_object_set_new(o, "model", json_string(in->name));
    json_object_set_new(o, "device", json_string("cpu"));
    json_object_set_new(o, "arch", json_string(in->arch));
    json_object_set_new(o, "quantization", json_string(in->file_type));
    json_object_set_new(o, "parameters_m", json_real((double)in->n_params / 1e6));
    json_object_set_new(o, "kernel", json_string(in->kernel));
    json_object_set_new(o, "threads", json_integer(in->threads));
    json_object_set_new(o, "weights_mapped_mib", json_real(mib(in->weight_bytes)));
    json_object_set_new(o, "scratch_mib", json_real(mib(in->scratch_bytes)));
    json_object_set_new(o, "kv_mib_per_4k", json_real(mib(nr_llama_kv_bytes(m, 4096))));
    json_object_set_new(o, "load_ms", json_real(now_ms() - t0));
    logits = nr_malloc(sizeof(float) * (size_t)in->n_vocab);
    for (int i = 0; i < 8; i++)
        ids[i] = (int32_t)((i * 2654435761u) % (unsigned)in->n_vocab);
    if (logits && nr_llama_seq_new(m, 64, &sq) == NR_OK) {
        int ok;
        t0 = now_ms();
        ok = nr_llama_eval(m, sq, ids, 8, logits) == NR_OK;
        t1 = now_ms();
        for (int i = 0; i < 16 && ok; i++) {
            int32_t next = 0;
            for (int j = 1; j < in->n_vocab; j++)
                if (logits[j] > logits[next])
                    next = j;
            ok = nr_llama_eval(m, sq, &next, 1, logits) == NR_OK;
        }
        if (ok) {
            json_object_set_new(o, "prefill_tokens_per_s", json_real(8 / ((t1 - t0) / 1e3)));
            json_object_set_new(o, "decode_tokens_per_s", json_real(16 / ((now_ms() - t1) / 1e3)));
        }
    }
    nr_llama_seq_free(sq);
    nr_free(logits);
    nr_llama_close(m);
    return o;
}

/* The vector index the commands would load from the store in `data`
 * ($NANORAG_DATA, else ./data): never creates a store. */
static json_t *index_info(struct nr_embedder *e, const char *data, const char *device)
{
    json_t *o = json_object();
    const char *env = getenv("NANORAG_DATA");
    char db[4200];
    struct stat st;
    struct nr_store *s = NULL;
    struct nr_retriever *r = NULL;
    struct nr_retriever_opts ro;
    struct nr_retriever_info in;
    double t0;

    snprintf(db, sizeof db, "%s/nanorag.db", data[0] ? data : env && *env ? env : "data");
    json_object_set_new(o, "store", json_string(db));
    if (stat(db, &st) != 0) {
        json_object_set_new(o, "vectors", json_integer(0));
        json_object_set_new(o, "note", json_string("no store yet (nanorag ingest creates it)"));
        return o;
    }
    nr_retriever_opts_default(&ro);
    ro.device = device;
    t0 = now_ms();
    if (nr_store_open(db, &s) || nr_retriever_open(s, e, NULL, &ro, &r)) {
        json_object_set_new(o, "error", json_string(nr_err_msg()));
        nr_store_close(s);
        return o;
    }
    nr_retriever_info(r, &in);
    json_object_set_new(o, "vectors", json_integer(in.vectors));
    json_object_set_new(o, "device", json_string(in.device));
    json_object_set_new(o, "memory_mib", json_real(mib(in.cpu_bytes)));
    json_object_set_new(o, "gpu_memory_mib", json_real(mib(in.gpu_bytes)));
    json_object_set_new(o, "gpu_from_vectors", json_integer(in.gpu_min_rows));
    if (in.note[0])
        json_object_set_new(o, "note", json_string(in.note));
    json_object_set_new(o, "load_ms", json_real(now_ms() - t0));
    nr_retriever_close(r);
    nr_store_close(s);
    return o;
}

static void print_text(json_t *j, int depth)
{
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        printf("%*s%-18s ", depth * 2, "", key);
        if (json_is_object(v)) {
            printf("\n");
            print_text(v, depth + 1);
        } else if (json_is_array(v)) {
            size_t i;
            json_t *e;
            printf("%zu\n", json_array_size(v));
            json_array_foreach(v, i, e)
            {
                printf("%*s[%zu]\n", (depth + 1) * 2, "", i);
                print_text(e, depth + 2);
            }
        } else if (json_is_string(v)) {
            printf("%s\n", json_string_value(v));
        } else if (json_is_integer(v)) {
            printf("%lld\n", (long long)json_integer_value(v));
        } else if (json_is_real(v)) {
            printf("%.2f\n", json_real_value(v));
        } else {
            printf("%s\n", json_is_true(v) ? "yes" : "no");
        }
    }
}

#define STATUS_USAGE                                                                               \
    "usage: nanorag status [--json] [--model PATH] [--device cpu|cuda|auto]\n"                     \
    "                      [--llm MODEL.gguf|none] [--data DIR] [--no-model]\n"

int cli_status(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},      {"model", required_argument, NULL, 'm'},
        {"no-model", no_argument, NULL, 'n'},  {"device", required_argument, NULL, 'd'},
        {"llm", required_argument, NULL, 'L'}, {"data", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0}};
    int as_json = 0, no_model = 0, c;
    char model[4096] = "", llm[4096] = "", data[4096] = "";
    const char *device = NULL;
    struct nr_embedder *e = NULL;
    json_t *doc;

    while ((c = getopt_long(argc, argv, "jm:nd:L:D:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            as_json = 1;
            break;
        case 'm':
            snprintf(model, sizeof model, "%s", optarg);
            break;
        case 'n':
            no_model = 1;
            break;
        case 'd':
            device = optarg;
            break;
        case 'L':
            snprintf(llm, sizeof llm, "%s", optarg);
            break;
        case 'D':
            snprintf(data, sizeof data, "%s", optarg);
            break;
        case 'h':
            printf("%s", STATUS_USAGE);
            return 0;
        default:
            fprintf(stderr, "%s", STATUS_USAGE);
            return 2;
        }
    }
    doc = json_object();
    json_object_set_new(doc, "version", json_string(NR_VERSION));
    json_object_set_new(doc, "platform", platform_info());
    json_object_set_new(doc, "cpu", cpu_info());
    json_object_set_new(doc, "memory", memory_info());
    json_object_set_new(doc, "gpu", gpu_info());
    if (!no_model) {
        if (!model[0] && cli_default_embed_model(model, sizeof model)) {
            json_t *o = json_object();
            json_object_set_new(o, "error", json_string(nr_err_msg()));
            json_object_set_new(doc, "embedder", o);
        } else {
            json_object_set_new(doc, "embedder", embedder_info(model, 0, device, &e));
        }
        if (strcmp(llm, "none") != 0) {
            if (!llm[0] && nr_llm_default_model(llm, sizeof llm)) {
                json_t *o = json_object();
                json_object_set_new(o, "error", json_string(nr_err_msg()));
                json_object_set_new(doc, "generator", o);
            } else {
                json_object_set_new(doc, "generator", generator_info(llm));
            }
        }
        if (e)
            json_object_set_new(doc, "index", index_info(e, data, device));
        nr_embedder_close(e);
    }
    if (as_json) {
        char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        if (s) {
            printf("%s\n", s);
            free(s);
        }
    } else {
        print_text(doc, 0);
    }
    json_decref(doc);
    return 0;
}

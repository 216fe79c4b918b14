/*
 * nanorag serve: the HTTP server (src/server/nr_server.h) on the data dir
 * the other commands use, until SIGINT or SIGTERM.
 *
 * Prints one line "nanorag: listening on http://HOST:PORT" on stdout once it
 * accepts connections (with --port 0 the port is the one the kernel chose;
 * tests read it from there).
 */
#include "nr_cli.h"

#include "nr_err.h"
#include "nr_log.h"
#include "nr_server.h"
#include "nr_store.h"
#include "nr_str.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nanorag serve [--listen HOST:PORT] [--data DIR] [--embed MODEL]\n"
            "                     [--llm MODEL.gguf|ollama:NAME[@URL]|openai:NAME@URL|none]\n"
            "                     [--api-key KEY] [--allow-host NAME]... [--threads N]\n"
            "                     [--slots N] [--queue N] [--ctx N] [--max-inputs N]\n"
            "                     [--max-connections N] [--int8] [--access-log]\n"
            "                     [--device cpu|cuda|auto] [--gpu-index-min N]\n"
            "\n"
            "  --listen       address to listen on (default 127.0.0.1:8080); anything but\n"
            "                 loopback needs --api-key (or NANORAG_API_KEY)\n"
            "  --api-key      require \"Authorization: Bearer KEY\" on every route but /health\n"
            "  --allow-host   another Host / Origin name to accept (DNS rebinding protection)\n"
            "  --int8         int8 embedder (about 3x the speed, cosine >= 0.985 to fp32)\n"
            "  --device       where embeddings and vector search run (default: $NANORAG_DEVICE,\n"
            "                 else auto: a CUDA GPU when one can be used, else the CPU)\n"
            "  --gpu-index-min  mirror the vector index on a discrete GPU from N vectors\n"
            "                 (default 50000; 0: always)\n"
            "  --llm          the generator (default: the local SmolLM2-135M-Instruct GGUF when\n"
            "                 it is installed, else none); none: embeddings and search only\n");
}

/* "HOST:PORT", "[v6]:PORT", ":PORT", "PORT" or "HOST" */
static int parse_listen(char *arg, char *host, size_t cap, int *port)
{
    char *colon;
    int p = *port;
    if (arg[0] == '[') {
        char *e = strchr(arg, ']');
        if (!e)
            return nr_err_set(NR_EINVAL, "--listen: missing ']'");
        *e = '\0';
        snprintf(host, cap, "%s", arg + 1);
        colon = e[1] == ':' ? e + 1 : NULL;
    } else {
        colon = strrchr(arg, ':');
        if (colon)
            *colon = '\0';
        if (arg[0] && strspn(arg, "0123456789") == strlen(arg) && !colon) {
            colon = arg - 1; /* just a port */
            snprintf(host, cap, "127.0.0.1");
            return nr_parse_int(arg, 0, 65535, "--listen port", port);
        }
        if (arg[0])
            snprintf(host, cap, "%s", arg);
    }
    if (colon && nr_parse_int(colon + 1, 0, 65535, "--listen port", &p))
        return NR_EINVAL;
    *port = p;
    return NR_OK;
}

int cli_serve(int argc, char **argv)
{
    static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                             {"data", required_argument, NULL, 'd'},
                                             {"embed", required_argument, NULL, 'e'},
                                             {"llm", required_argument, NULL, 'L'},
                                             {"api-key", required_argument, NULL, 'k'},
                                             {"allow-host", required_argument, NULL, 'a'},
                                             {"threads", required_argument, NULL, 't'},
                                             {"slots", required_argument, NULL, 's'},
                                             {"queue", required_argument, NULL, 'q'},
                                             {"ctx", required_argument, NULL, 'c'},
                                             {"max-inputs", required_argument, NULL, 'i'},
                                             {"access-log", no_argument, NULL, 'A'},
                                             {"int8", no_argument, NULL, '8'},
                                             {"max-connections", required_argument, NULL, 'C'},
                                             {"device", required_argument, NULL, 'D'},
                                             {"gpu-index-min", required_argument, NULL, 'G'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    char data[4096] = "", embed[4096] = "", db[4200], host[300] = "127.0.0.1";
    const char *llm = "", *key = getenv("NANORAG_API_KEY");
    struct nr_server_opts o;
    struct nr_server *srv = NULL;
    struct nr_store *probe = NULL;
    sigset_t set;
    int c, n_allow = 0, sig;

    nr_server_opts_default(&o);
    while ((c = getopt_long(argc, argv, "l:d:e:L:k:a:t:s:q:c:i:AC:8D:G:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': {
            char arg[256]; /* a copy: parsing cuts it, and argv shows in ps */
            if (snprintf(arg, sizeof arg, "%s", optarg) >= (int)sizeof arg) {
                fprintf(stderr, "nanorag: serve: --listen is too long\n");
                return 2;
            }
            if (parse_listen(arg, host, sizeof host, &o.http.port))
                return cli_fail("serve");
            break;
        }
        case 'd':
            snprintf(data, sizeof data, "%s", optarg);
            break;
        case 'e':
            snprintf(embed, sizeof embed, "%s", optarg);
            break;
        case 'L':
            llm = strcmp(optarg, "none") ? optarg : NULL;
            break;
        case 'k':
            key = optarg;
            break;
        case 'a':
            if (n_allow >= NR_HTTP_MAX_ALLOW) {
                fprintf(stderr, "nanorag: serve: at most %d --allow-host\n", NR_HTTP_MAX_ALLOW);
                return 2;
            }
            o.http.allow_hosts[n_allow++] = optarg;
            break;
        case 't':
            if (nr_parse_int(optarg, 1, 1024, "--threads", &o.threads))
                return cli_fail("serve");
            break;
        case 's':
            if (nr_parse_int(optarg, 1, 64, "--slots", &o.llm_slots))
                return cli_fail("serve");
            break;
        case 'q':
            if (nr_parse_int(optarg, 0, 4096, "--queue", &o.llm_queue))
                return cli_fail("serve");
            break;
        case 'c':
            if (nr_parse_int(optarg, 64, 1 << 20, "--ctx", &o.llm_ctx))
                return cli_fail("serve");
            break;
        case 'i':
            if (nr_parse_int(optarg, 1, 4096, "--max-inputs", &o.max_inputs))
                return cli_fail("serve");
            break;
        case 'A':
            o.http.access_log = 1;
            break;
        case '8':
            o.embed_int8 = 1;
            break;
        case 'C':
            if (nr_parse_int(optarg, 1, 4096, "--max-connections", &o.http.max_connections))
                return cli_fail("serve");
            break;
        case 'D':
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "auto")) {
                fprintf(stderr, "nanorag: serve: --device must be cpu, cuda or auto, not \"%s\"\n",
                        optarg);
                return 2;
            }
            o.device = optarg;
            break;
        case 'G': {
            int n;
            if (nr_parse_int(optarg, 0, 1 << 30, "--gpu-index-min", &n))
                return cli_fail("serve");
            o.gpu_index_rows = n;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    o.http.host = host;
    o.http.api_key = key && key[0] ? key : NULL;
    if (!o.device && !(getenv("NANORAG_DEVICE") && getenv("NANORAG_DEVICE")[0]))
        o.device = "auto"; /* a server uses a GPU when it has one */
    if (o.http.access_log && nr_log_level() < NR_LOG_INFO)
        nr_log_set_level(NR_LOG_INFO);
    /* refused before anything is loaded or created (http.c refuses it too) */
    if (!nr_http_is_loopback(host) && !o.http.api_key) {
        fprintf(stderr,
                "nanorag: serve: refusing to listen on %s (not loopback) without an API key: "
                "pass --api-key KEY (or NANORAG_API_KEY)\n",
                host);
        return 2;
    }
    if (!embed[0] && cli_default_embed_model(embed, sizeof embed))
        return cli_fail("serve");
    /* the data dir as the other commands resolve and create it */
    if (cli_open_store(data, sizeof data, &probe))
        return cli_fail("serve: opening the store");
    nr_store_close(probe);
    snprintf(db, sizeof db, "%s/nanorag.db", data);
    o.db_path = db;
    o.embed_model = embed;
    o.llm_spec = llm;

    /* signals are taken by sigwait below, never by a connection thread */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (nr_server_open(&o, &srv))
        return cli_fail("serve");
    printf("nanorag: listening on http://%s%s%s:%d\n", strchr(host, ':') ? "[" : "", host,
           strchr(host, ':') ? "]" : "", nr_server_port(srv));
    fflush(stdout);
    sigwait(&set, &sig);
    fprintf(stderr, "nanorag: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    nr_server_close(srv);
    return 0;
}

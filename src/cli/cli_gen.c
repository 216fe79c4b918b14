/*
 * nanorag generate / nanorag chat: text generation with a local GGUF model.
 *
 *   generate PROMPT...  the words of PROMPT joined by spaces (or all of
 *                       standard input when there is none), formatted as one
 *                       user turn with the model's chat template (--raw: as
 *                       is); the reply is streamed to stdout, and the token
 *                       counts and rates go to stderr at the end.
 *   chat                one user turn per line of standard input (a prompt on
 *                       a terminal); replies streamed; /reset forgets the
 *                       conversation, /exit (or end of input) leaves. The
 *                       conversation stays in one sequence, so each turn
 *                       evaluates only its new tokens; old turns are dropped
 *                       when the context is full (nr_gen_chat).
 *
 * Ctrl-C while a reply streams sets the cancel flag: the reply stops and
 * chat goes on (generate ends normally, with its statistics). Ctrl-C at the
 * chat prompt leaves.
 *
 * Exit codes: 0 done, 1 runtime error (model missing or broken, ...),
 * 2 usage error (unknown option, bad value).
 */
#define _GNU_SOURCE
#include "nr_cli.h"
#include "nr_llm.h"

#include "nr_err.h"
#include "nr_gen.h"
#include "nr_llama.h"
#include "nr_mem.h"
#include "nr_str.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PROMPT   (16u << 20) /* bytes of a generate prompt */
#define MAX_LINE     (1 << 20)   /* bytes of one chat line */
#define MAX_MESSAGES 512         /* chat history kept (oldest turns dropped first) */
#define MAX_REPLY    (4u << 20)  /* bytes of one reply kept for the history */

static volatile int g_cancel;

static void on_sigint(int sig)
{
    (void)sig;
    g_cancel = 1;
}

struct gen_opts {
    char model[4096];
    struct nr_gen_params p;
    int threads; /* <= 0: one per CPU */
    int n_ctx;   /* <= 0: the model's default */
    int raw;     /* generate: no chat template */
    int stats;   /* chat: print statistics after each reply */
    int max_set; /* --max-tokens was given */
    const char *system;
};

static void gen_usage(FILE *f, int chat)
{
    if (chat)
        fprintf(f, "usage: nanorag chat [options]\n"
                   "  one user turn per line of standard input; /reset, /exit\n"
                   "  --system TEXT       system message\n"
                   "  --stats             token counts and rates after each reply (stderr)\n");
    else
        fprintf(f, "usage: nanorag generate [options] PROMPT...\n"
                   "  PROMPT              the words are joined by spaces; none: standard input\n"
                   "  --raw               no chat template: the prompt is given to the model as "
                   "is\n");
    fprintf(f,
            "  --model PATH        GGUF file (default: SmolLM2-135M-Instruct, see README)\n"
            "  --max-tokens N      tokens to generate at most (default 512, at most half the\n"
            "                      context; 0: until the context is full)\n"
            "  --temperature T     0 = greedy (default 0.8)\n"
            "  --top-k K           0 = off (default 40)\n"
            "  --top-p P           1 = off (default 0.95)\n"
            "  --min-p P           0 = off (default 0.05)\n"
            "  --repeat-penalty R  1 = off (default 1.1)\n"
            "  --repeat-last-n N   tokens the penalty looks at (default 64)\n"
            "  --seed S            random seed (default 0): same seed, same output\n"
            "  --stop STR          stop when STR is generated (repeatable, up to %d)\n"
            "  --threads N         worker threads (default: one per CPU)\n"
            "  --ctx N             context length in tokens (default: min(trained, 4096))\n",
            NR_GEN_MAX_STOP);
}

/* A float option in [lo, hi] (lo itself excluded when open_lo). */
static int parse_float(const char *s, double lo, double hi, int open_lo, const char *what,
                       float *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi || (open_lo && v == lo))
        return nr_err_set(NR_EINVAL, "%s: expected a number in %s%g, %g], got \"%s\"", what,
                          open_lo ? "(" : "[", lo, hi, s);
    *out = (float)v;
    return NR_OK;
}

static int usage_error(const char *cmd)
{
    fprintf(stderr, "nanorag: %s: %s\n", cmd, nr_err_msg());
    return 2;
}

/* Parse the options shared by generate and chat; returns -1 to go on, else an exit code. */
static int parse_opts(int argc, char **argv, int chat, struct gen_opts *o)
{
    static const struct option longopts[] = {{"model", required_argument, NULL, 'm'},
                                             {"max-tokens", required_argument, NULL, 'n'},
                                             {"temperature", required_argument, NULL, 'T'},
                                             {"top-k", required_argument, NULL, 'k'},
                                             {"top-p", required_argument, NULL, 'p'},
                                             {"min-p", required_argument, NULL, 'P'},
                                             {"repeat-penalty", required_argument, NULL, 'r'},
                                             {"repeat-last-n", required_argument, NULL, 'l'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"stop", required_argument, NULL, 'S'},
                                             {"threads", required_argument, NULL, 't'},
                                             {"ctx", required_argument, NULL, 'c'},
                                             {"raw", no_argument, NULL, 'R'},
                                             {"system", required_argument, NULL, 'y'},
                                             {"stats", no_argument, NULL, 'x'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = chat ? "chat" : "generate";
    int c, n_stop = 0;
    int64_t seed;

    memset(o, 0, sizeof *o);
    nr_gen_params_default(&o->p);
    while ((c = getopt_long(argc, argv, "m:n:T:k:p:P:r:l:s:S:t:c:Ry:xh", longopts, NULL)) != -1) {
        int rc = NR_OK;
        switch (c) {
        case 'm':
            if (snprintf(o->model, sizeof o->model, "%s", optarg) >= (int)sizeof o->model)
                rc = nr_err_set(NR_EINVAL, "--model: path too long");
            break;
        case 'n':
            rc = nr_parse_int(optarg, 0, 1 << 20, "--max-tokens", &o->p.max_tokens);
            o->max_set = 1;
            break;
        case 'T':
            rc = parse_float(optarg, 0, 100, 0, "--temperature", &o->p.temperature);
            break;
        case 'k':
            rc = nr_parse_int(optarg, 0, 1 << 20, "--top-k", &o->p.top_k);
            break;
        case 'p':
            rc = parse_float(optarg, 0, 1, 1, "--top-p", &o->p.top_p);
            break;
        case 'P':
            rc = parse_float(optarg, 0, 1, 0, "--min-p", &o->p.min_p);
            break;
        case 'r':
            rc = parse_float(optarg, 0, 100, 1, "--repeat-penalty", &o->p.repeat_penalty);
            break;
        case 'l':
            rc = nr_parse_int(optarg, 0, 8192, "--repeat-last-n", &o->p.repeat_last_n);
            break;
        case 's':
            rc = nr_parse_i64(optarg, 0, INT64_MAX, "--seed", &seed);
            if (rc == NR_OK)
                o->p.seed = (uint64_t)seed;
            break;
        case 'S':
            if (n_stop == NR_GEN_MAX_STOP)
                rc = nr_err_set(NR_EINVAL, "--stop: at most %d stop strings", NR_GEN_MAX_STOP);
            else if (!optarg[0] || strlen(optarg) > NR_GEN_MAX_STOP_LEN)
                rc = nr_err_set(NR_EINVAL, "--stop: 1 to %d bytes", NR_GEN_MAX_STOP_LEN);
            else
                o->p.stop[n_stop++] = optarg;
            break;
        case 't':
            rc = nr_parse_int(optarg, 1, 256, "--threads", &o->threads);
            break;
        case 'c':
            rc = nr_parse_int(optarg, 16, 1 << 20, "--ctx", &o->n_ctx);
            break;
        case 'R':
            if (chat)
                goto bad;
            o->raw = 1;
            break;
        case 'y':
            if (!chat)
                goto bad;
            o->system = optarg;
            break;
        case 'x':
            if (!chat)
                goto bad;
            o->stats = 1;
            break;
        case 'h':
            gen_usage(stdout, chat);
            return 0;
        default:
            goto bad;
        }
        if (rc)
            return usage_error(cmd);
    }
    if (chat && optind < argc) {
        fprintf(stderr,
                "nanorag: chat: unexpected argument \"%s\" (messages come from standard "
                "input)\n",
                argv[optind]);
        return 2;
    }
    return -1;
bad:
    gen_usage(stderr, chat);
    return 2;
}

static int open_model(const char *cmd, struct gen_opts *o, struct nr_llama **m,
                      struct nr_llama_seq **seq)
{
    struct nr_llama_opts lo;
    char what[64];
    if (!o->model[0] && nr_llm_default_model(o->model, sizeof o->model))
        return cli_fail(cmd);
    nr_llama_opts_default(&lo);
    lo.threads = o->threads;
    snprintf(what, sizeof what, "%s: loading model", cmd);
    if (nr_llama_open(o->model, &lo, m))
        return cli_fail(what);
    if (nr_llama_seq_new(*m, o->n_ctx, seq)) {
        nr_llama_close(*m);
        *m = NULL;
        return cli_fail(cmd);
    }
    /* The default answer length must leave room for a prompt in a small --ctx. */
    if (!o->max_set && o->p.max_tokens > nr_llama_seq_n_ctx(*seq) / 2)
        o->p.max_tokens = nr_llama_seq_n_ctx(*seq) / 2;
    return 0;
}

/* Stream to stdout; keep a copy of the reply when ud is a struct reply. */
struct reply {
    char *buf;
    size_t len, cap;
    int overflow; /* the reply outgrew MAX_REPLY: the history keeps the start */
};

static int on_text(void *ud, const char *text, size_t len)
{
    struct reply *r = ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (r && !r->overflow) {
        if (r->len + len + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            char *nb;
            while (cap < r->len + len + 1)
                cap *= 2;
            nb = cap <= MAX_REPLY ? nr_realloc(r->buf, cap) : NULL;
            if (!nb) {
                r->overflow = 1;
                return 0;
            }
            r->buf = nb;
            r->cap = cap;
        }
        memcpy(r->buf + r->len, text, len);
        r->len += len;
        r->buf[r->len] = '\0';
    }
    return 0;
}

static void print_stats(const struct nr_gen_stats *st)
{
    fprintf(stderr,
            "prompt: %d tokens (%d evaluated) in %.3f s, %.1f tokens/s\n"
            "generated: %d tokens in %.3f s, %.1f tokens/s (%s)\n",
            st->prompt_tokens, st->prompt_evaluated, st->prompt_s,
            st->prompt_s > 0 ? st->prompt_evaluated / st->prompt_s : 0.0, st->gen_tokens, st->gen_s,
            st->gen_s > 0 ? st->gen_tokens / st->gen_s : 0.0, st->done_reason);
}

static void install_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a read at the chat prompt returns EINTR */
    sigaction(SIGINT, &sa, NULL);
}

/* All of standard input as the prompt (bounded). */
static int read_stdin(char **out)
{
    size_t len = 0, cap = 0;
    char *buf = NULL;
    for (;;) {
        size_t got;
        if (len + 4096 + 1 > cap) {
            char *nb;
            cap = cap ? cap * 2 : 8192;
            if (cap > MAX_PROMPT + 1)
                cap = MAX_PROMPT + 1;
            if (len + 1 >= cap) {
                nr_free(buf);
                return nr_err_set(NR_ELIMIT, "the prompt on standard input is over %u bytes",
                                  MAX_PROMPT);
            }
            nb = nr_realloc(buf, cap);
            if (!nb) {
                nr_free(buf);
                return nr_err_set(NR_ENOMEM, "out of memory reading standard input");
            }
            buf = nb;
        }
        got = fread(buf + len, 1, cap - len - 1, stdin);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(stdin)) {
        nr_free(buf);
        return nr_err_set(NR_EIO, "read error on standard input");
    }
    buf[len] = '\0';
    *out = buf;
    return NR_OK;
}

int cli_generate(int argc, char **argv)
{
    struct gen_opts o;
    struct nr_llama *m = NULL;
    struct nr_llama_seq *seq = NULL;
    struct nr_gen_stats st;
    char *prompt = NULL;
    int rc, ex;

    ex = parse_opts(argc, argv, 0, &o);
    if (ex >= 0)
        return ex;
    if (optind < argc) {
        size_t len = 0;
        for (int i = optind; i < argc; i++)
            len += strlen(argv[i]) + 1;
        if (len > MAX_PROMPT) {
            fprintf(stderr, "nanorag: generate: the prompt is over %u bytes\n", MAX_PROMPT);
            return 2;
        }
        prompt = nr_malloc(len + 1);
        if (!prompt) {
            nr_err_set(NR_ENOMEM, "out of memory");
            return cli_fail("generate");
        }
        len = 0;
        for (int i = optind; i < argc; i++) {
            size_t n = strlen(argv[i]);
            if (i > optind)
                prompt[len++] = ' ';
            memcpy(prompt + len, argv[i], n);
            len += n;
        }
        prompt[len] = '\0';
    } else {
        if (isatty(STDIN_FILENO)) {
            gen_usage(stderr, 0);
            return 2;
        }
        if (read_stdin(&prompt))
            return cli_fail("generate");
    }
    if (!prompt[0]) {
        nr_free(prompt);
        fprintf(stderr, "nanorag: generate: empty prompt\n");
        return 2;
    }
    ex = open_model("generate", &o, &m, &seq);
    if (ex) {
        nr_free(prompt);
        return ex;
    }
    o.p.cancel = &g_cancel;
    install_sigint();
    if (o.raw) {
        rc = nr_gen_text(m, seq, prompt, &o.p, on_text, NULL, &st);
    } else {
        struct nr_chat_msg msg = {"user", prompt};
        rc = nr_gen_chat(m, seq, &msg, 1, &o.p, on_text, NULL, &st);
    }
    nr_free(prompt);
    if (rc) {
        nr_llama_seq_free(seq);
        nr_llama_close(m);
        return cli_fail("generate");
    }
    printf("\n");
    fflush(stdout);
    print_stats(&st);
    nr_llama_seq_free(seq);
    nr_llama_close(m);
    return 0;
}

/*
 * One line of at most cap - 2 bytes into buf, without its line ending.
 * Returns its length; -1 at end of input (or a read interrupted by Ctrl-C);
 * -2 when the line was longer (the rest of it is read and discarded), so
 * memory stays bounded whatever arrives on standard input.
 */
static long read_line(FILE *in, char *buf, size_t cap)
{
    size_t n;
    if (!fgets(buf, (int)cap, in))
        return -1;
    n = strlen(buf);
    if (n == cap - 1 && buf[n - 1] != '\n') {
        int c;
        while ((c = fgetc(in)) != EOF && c != '\n')
            ;
        return -2;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return (long)n;
}

/* The chat's messages; contents owned. */
struct history {
    struct nr_chat_msg msg[MAX_MESSAGES];
    int n;
    int has_system;
};

static void history_clear(struct history *h)
{
    for (int i = h->has_system; i < h->n; i++)
        nr_free((char *)h->msg[i].content);
    h->n = h->has_system;
}

/* Append a message (content copied); the oldest turn goes when full. */
static int history_add(struct history *h, const char *role, const char *content)
{
    char *c;
    if (h->n == MAX_MESSAGES) {
        int first = h->has_system, next = first + 1;
        while (next < h->n && strcmp(h->msg[next].role, "user"))
            next++;
        for (int i = first; i < next; i++)
            nr_free((char *)h->msg[i].content);
        memmove(h->msg + first, h->msg + next, (size_t)(h->n - next) * sizeof h->msg[0]);
        h->n -= next - first;
    }
    c = nr_strdup(content);
    if (!c)
        return nr_err_set(NR_ENOMEM, "out of memory for the chat history");
    h->msg[h->n].role = role;
    h->msg[h->n].content = c;
    h->n++;
    return NR_OK;
}

int cli_chat(int argc, char **argv)
{
    struct gen_opts o;
    struct nr_llama *m = NULL;
    struct nr_llama_seq *seq = NULL;
    struct history *h = NULL;
    struct reply r = {0};
    char *line = NULL;
    int ex, tty = isatty(STDIN_FILENO), rc = NR_OK;

    ex = parse_opts(argc, argv, 1, &o);
    if (ex >= 0)
        return ex;
    ex = open_model("chat", &o, &m, &seq);
    if (ex)
        return ex;
    h = nr_calloc(1, sizeof *h);
    line = nr_malloc(MAX_LINE + 2);
    if (!h || !line) {
        nr_err_set(NR_ENOMEM, "out of memory");
        ex = cli_fail("chat");
        goto out;
    }
    if (o.system) {
        h->msg[0].role = "system";
        h->msg[0].content = o.system;
        h->n = h->has_system = 1;
    }
    o.p.cancel = &g_cancel;
    install_sigint();
    if (tty)
        fprintf(stderr, "nanorag chat: %s (/reset forgets, /exit or Ctrl-D leaves)\n",
                nr_llama_info(m)->name);
    for (;;) {
        struct nr_gen_stats st;
        long got;
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        g_cancel = 0;
        got = read_line(stdin, line, MAX_LINE + 2);
        if (got == -1) {
            if (tty)
                fputc('\n', stdout);
            break; /* end of input, or Ctrl-C at the prompt */
        }
        if (got == -2) {
            fprintf(stderr, "nanorag: chat: line over %d bytes ignored\n", MAX_LINE);
            continue;
        }
        if (got == 0)
            continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit"))
            break;
        if (!strcmp(line, "/reset")) {
            history_clear(h);
            nr_llama_seq_truncate(seq, 0);
            if (tty)
                fprintf(stderr, "(conversation forgotten)\n");
            continue;
        }
        rc = history_add(h, "user", line);
        if (rc)
            break;
        r.len = 0;
        r.overflow = 0;
        if (r.buf)
            r.buf[0] = '\0';
        rc = nr_gen_chat(m, seq, h->msg, h->n, &o.p, on_text, &r, &st);
        fputc('\n', stdout);
        fflush(stdout);
        if (rc) {
            /* The turn failed (e.g. the line alone does not fit the context): say so, go on. */
            fprintf(stderr, "nanorag: chat: %s\n", nr_err_msg());
            nr_free((char *)h->msg[--h->n].content);
            rc = NR_OK;
            continue;
        }
        if (o.stats)
            print_stats(&st);
        rc = history_add(h, "assistant", r.buf ? r.buf : "");
        if (rc)
            break;
    }
    ex = rc ? cli_fail("chat") : 0;
out:
    if (h) {
        history_clear(h);
        nr_free(h);
    }
    nr_free(line);
    nr_free(r.buf);
    nr_llama_seq_free(seq);
    nr_llama_close(m);
    return ex;
}

/*
 * udp-peers: a haifu datagram transport in C that sends each datagram by
 * UDP unicast to a list of peers. For sites whose network carries no
 * multicast: the relay lists its clients, each client binds the group's
 * port. A starter to copy: it follows plugins/abi/SPEC.md and passes
 * `haifu plugins check` (see the Makefile).
 *
 * group_open keys (SPEC 5.6 lists the ones the engine adds):
 *   group=HOST:PORT    engine; its port is the default bound port and peer port
 *   join=true|false    engine; false: send-only, bound to an ephemeral port
 *   loopback=true|false engine; false drops datagrams from this group's own address
 *   ttl=N              engine; IP TTL of sent datagrams
 *   interface=...      engine; accepted and ignored (unicast follows the routes)
 *   peers=H:P,H:P,...  where every datagram goes (":P" may be left out: the
 *                      group's port); without it the member only receives (a
 *                      client), and group_send says so
 *   bind=IP:PORT       the address to receive on (default 0.0.0.0:<group port>)
 *   rate=BITS          pacing ceiling in bits of payload per second, suffixes
 *                      k, M, G (100M); 0 or absent: unpaced
 *   max_datagram=N     larger sends are refused with TOO_LARGE (default 65507)
 *
 * Build: make (gives libhaifu_transport_udp_peers.so). IPv4 only, to stay short.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "haifu_transport.h"

#define MAX_PEERS 256
#define SCRATCH 65536

/* Writes a message into the host's error buffer, never beyond cap. */
static void set_err(HaifuErrorBuf *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void set_err(HaifuErrorBuf *e, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!e || !e->ptr || n < 0) return;
    size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    if (len > e->cap) len = e->cap;
    memcpy(e->ptr, msg, len);
    e->len = len;
}

typedef struct Group {
    int fd;
    struct sockaddr_in self;
    struct sockaddr_in peers[MAX_PEERS];
    size_t npeers;
    int loopback;
    size_t max_datagram;
    uint64_t rate_bps;
    pthread_mutex_t pace_lock;
    uint64_t next_ns; /* when the next datagram may leave */
} Group;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* "a.b.c.d:port" (or "a.b.c.d" with default_port) into addr; 0 on success. */
static int parse_addr(const char *s, size_t n, uint16_t default_port, struct sockaddr_in *addr) {
    char host[64];
    if (n == 0 || n >= sizeof host) return -1;
    memcpy(host, s, n);
    host[n] = 0;
    long port = default_port;
    char *colon = strrchr(host, ':');
    if (colon) {
        char *end;
        *colon = 0;
        port = strtol(colon + 1, &end, 10);
        if (*end || colon[1] == 0 || port < 0 || port > 65535) return -1;
    }
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &addr->sin_addr) == 1 ? 0 : -1;
}

static int parse_bool(const char *v, int *out) {
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1")) *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0")) *out = 0;
    else return -1;
    return 0;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

static int instance;

static HaifuStatus up_init(const uint8_t *config, size_t len, HaifuHandle *out, HaifuErrorBuf *e) {
    /* No instance keys: anything but blank lines and comments is unknown. */
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && config[j] != '\n') j++;
        size_t k = i;
        while (k < j && (config[k] == ' ' || config[k] == '\t' || config[k] == '\r')) k++;
        if (k < j && config[k] != '#') {
            set_err(e, "configuration: unknown key on line \"%.*s\" (init takes none)",
                    (int)(j - i > 100 ? 100 : j - i), (const char *)config + i);
            return HAIFU_INVALID_ARGUMENT;
        }
        i = j + 1;
    }
    if (!out) return HAIFU_INVALID_ARGUMENT;
    *out = &instance;
    return HAIFU_OK;
}

static void up_shutdown(HaifuHandle p) { (void)p; }

static HaifuStatus up_open(HaifuHandle p, const uint8_t *config, size_t len, HaifuHandle *out,
                           HaifuErrorBuf *e) {
    (void)p;
    if (!out || (!config && len)) {
        set_err(e, "null argument");
        return HAIFU_INVALID_ARGUMENT;
    }
    char *text = malloc(len + 1);
    if (!text) return HAIFU_INTERNAL;
    memcpy(text, config, len);
    text[len] = 0;
    if (memchr(text, 0, len)) {
        free(text);
        set_err(e, "configuration contains a NUL byte");
        return HAIFU_INVALID_ARGUMENT;
    }

    const char *group = NULL, *peers = NULL, *bind_to = NULL;
    int join = 1, loopback = 1, line_no = 0;
    long ttl = 1, max_dg = 65507;
    unsigned long long rate = 0;
    HaifuStatus st = HAIFU_OK;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        line = trim(line);
        if (!*line || *line == '#') continue;
        char *eq = strchr(line, '=');
        if (!eq) {
            set_err(e, "configuration line %d: expected key=value", line_no);
            st = HAIFU_INVALID_ARGUMENT;
            break;
        }
        *eq = 0;
        char *k = trim(line), *v = trim(eq + 1), *end = NULL;
        int bad = 0;
        if (!strcmp(k, "group")) group = v;
        else if (!strcmp(k, "peers")) peers = v;
        else if (!strcmp(k, "bind")) bind_to = v;
        else if (!strcmp(k, "interface")) { /* unicast follows the routing table */ }
        else if (!strcmp(k, "join")) bad = parse_bool(v, &join);
        else if (!strcmp(k, "loopback")) bad = parse_bool(v, &loopback);
        else if (!strcmp(k, "ttl")) { ttl = strtol(v, &end, 10); bad = !*v || *end || ttl < 1 || ttl > 255; }
        else if (!strcmp(k, "rate")) {
            rate = strtoull(v, &end, 10);
            unsigned long long mult = *end == 'k' ? 1000ull : *end == 'M' ? 1000000ull
                                    : *end == 'G' ? 1000000000ull : 1ull;
            if (mult > 1) end++;
            bad = !*v || *end || rate > 1000000000000ull / mult;
            rate *= mult;
        }
        else if (!strcmp(k, "max_datagram")) {
            max_dg = strtol(v, &end, 10);
            bad = !*v || *end || max_dg < 1 || max_dg > 65507;
        } else {
            set_err(e, "configuration: unknown key \"%.64s\" (known: group, join, loopback, ttl, "
                       "interface, peers, bind, rate, max_datagram)", k);
            st = HAIFU_INVALID_ARGUMENT;
            break;
        }
        if (bad) {
            set_err(e, "configuration: bad value \"%.64s\" for \"%s\"", v, k);
            st = HAIFU_INVALID_ARGUMENT;
            break;
        }
    }

    Group *g = NULL;
    struct sockaddr_in gaddr = {0};
    if (st == HAIFU_OK && group && parse_addr(group, strlen(group), 0, &gaddr)) {
        set_err(e, "configuration: bad group \"%.64s\" (expected a.b.c.d:port)", group);
        st = HAIFU_INVALID_ARGUMENT;
    }
    uint16_t port = ntohs(gaddr.sin_port);
    if (st == HAIFU_OK && !(g = calloc(1, sizeof *g))) st = HAIFU_INTERNAL;
    if (st == HAIFU_OK) {
        g->fd = -1;
        for (const char *s = peers ? peers : ""; *s && st == HAIFU_OK;) {
            const char *c = strchr(s, ',');
            size_t n = c ? (size_t)(c - s) : strlen(s);
            while (n && *s == ' ') { s++; n--; }
            while (n && s[n - 1] == ' ') n--;
            if (g->npeers == MAX_PEERS) {
                set_err(e, "configuration: more than %d peers", MAX_PEERS);
                st = HAIFU_INVALID_ARGUMENT;
            } else if (parse_addr(s, n, port, &g->peers[g->npeers]) ||
                       g->peers[g->npeers].sin_port == 0) {
                set_err(e, "configuration: bad peer \"%.*s\" (expected a.b.c.d:port)",
                        (int)(n > 64 ? 64 : n), s);
                st = HAIFU_INVALID_ARGUMENT;
            } else {
                g->npeers++;
            }
            s = c ? c + 1 : s + n;
        }
    }
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    local.sin_port = join ? htons(port) : 0;
    if (st == HAIFU_OK && bind_to && join && parse_addr(bind_to, strlen(bind_to), port, &local)) {
        set_err(e, "configuration: bad bind \"%.64s\" (expected a.b.c.d:port)", bind_to);
        st = HAIFU_INVALID_ARGUMENT;
    }
    if (st == HAIFU_OK) {
        g->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int t = (int)ttl, buf = 8 << 20;
        if (g->fd < 0 || setsockopt(g->fd, IPPROTO_IP, IP_TTL, &t, sizeof t) ||
            bind(g->fd, (struct sockaddr *)&local, sizeof local)) {
            char a[INET_ADDRSTRLEN] = "?";
            inet_ntop(AF_INET, &local.sin_addr, a, sizeof a);
            set_err(e, "cannot bind %s:%u: %s", a, ntohs(local.sin_port), strerror(errno));
            st = HAIFU_IO;
        } else {
            setsockopt(g->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf); /* a request */
            socklen_t sl = sizeof g->self;
            getsockname(g->fd, (struct sockaddr *)&g->self, &sl);
        }
    }
    free(text);
    if (st != HAIFU_OK) {
        if (g && g->fd >= 0) close(g->fd);
        free(g);
        return st;
    }
    g->loopback = loopback;
    g->max_datagram = (size_t)max_dg;
    g->rate_bps = rate;
    pthread_mutex_init(&g->pace_lock, NULL);
    g->next_ns = now_ns();
    *out = g;
    return HAIFU_OK;
}

/* Waits until this datagram may leave under the rate ceiling. */
static void pace(Group *g, size_t len) {
    if (!g->rate_bps) return;
    pthread_mutex_lock(&g->pace_lock);
    uint64_t now = now_ns(), burst = 2000000; /* catch up at most 2 ms */
    if (g->next_ns + burst < now) g->next_ns = now - burst;
    uint64_t at = g->next_ns;
    g->next_ns += (uint64_t)((unsigned __int128)len * 8 * 1000000000u / g->rate_bps);
    pthread_mutex_unlock(&g->pace_lock);
    for (uint64_t t = now_ns(); t < at; t = now_ns()) {
        uint64_t left = at - t;
        struct timespec ts = {0, (long)(left > 1000000 ? left - 500000 : 0)};
        if (ts.tv_nsec) nanosleep(&ts, NULL);
        else sched_yield();
    }
}

static HaifuStatus up_send(HaifuHandle h, const uint8_t *data, size_t len, HaifuErrorBuf *e) {
    Group *g = h;
    if (!g || (!data && len)) {
        set_err(e, "null argument");
        return HAIFU_INVALID_ARGUMENT;
    }
    if (g->npeers == 0) {
        set_err(e, "no peers configured (peers=host:port,...): this member only receives");
        return HAIFU_UNSUPPORTED;
    }
    if (len > g->max_datagram) {
        set_err(e, "datagram of %zu bytes, limit %zu", len, g->max_datagram);
        return HAIFU_TOO_LARGE;
    }
    pace(g, len);
    for (size_t i = 0; i < g->npeers; i++) {
        /* A peer that is down (ECONNREFUSED from an earlier send) must not
         * stop the others: datagrams may be lost. */
        if (sendto(g->fd, data, len, 0, (struct sockaddr *)&g->peers[i], sizeof g->peers[i]) < 0 &&
            errno != ECONNREFUSED && errno != EHOSTUNREACH && errno != ENETUNREACH) {
            char a[INET_ADDRSTRLEN] = "?";
            inet_ntop(AF_INET, &g->peers[i].sin_addr, a, sizeof a);
            set_err(e, "send to %s:%u: %s", a, ntohs(g->peers[i].sin_port), strerror(errno));
            return HAIFU_IO;
        }
    }
    return HAIFU_OK;
}

static HaifuStatus up_recv(HaifuHandle h, uint8_t *buf, size_t cap, size_t *out_len,
                           uint64_t timeout_ms, HaifuErrorBuf *e) {
    Group *g = h;
    if (!g || !out_len || (!buf && cap)) {
        set_err(e, "null argument");
        return HAIFU_INVALID_ARGUMENT;
    }
    uint64_t deadline = timeout_ms == HAIFU_TIMEOUT_INFINITE ? UINT64_MAX
                                                             : now_ns() + timeout_ms * 1000000u;
    uint8_t scratch[SCRATCH];
    for (;;) {
        uint64_t now = now_ns();
        int wait_ms = -1;
        if (deadline != UINT64_MAX) {
            uint64_t left = deadline > now ? (deadline - now + 999999) / 1000000 : 0;
            wait_ms = left > 1000000 ? 1000000 : (int)left;
        }
        struct pollfd p = {.fd = g->fd, .events = POLLIN};
        int r = poll(&p, 1, wait_ms);
        if (r < 0 && errno != EINTR) {
            set_err(e, "poll: %s", strerror(errno));
            return HAIFU_IO;
        }
        if (r > 0) {
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(g->fd, scratch, sizeof scratch, MSG_DONTWAIT,
                                 (struct sockaddr *)&from, &fl);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNREFUSED) {
                set_err(e, "receive: %s", strerror(errno));
                return HAIFU_IO;
            }
            /* Another thread may have taken it (EAGAIN); or it is our own. */
            int own = n >= 0 && from.sin_port == g->self.sin_port &&
                      (from.sin_addr.s_addr == g->self.sin_addr.s_addr ||
                       g->self.sin_addr.s_addr == htonl(INADDR_ANY));
            if (n >= 0 && !(own && !g->loopback)) {
                if ((size_t)n > cap) {
                    *out_len = (size_t)n;
                    set_err(e, "datagram of %zd bytes, buffer %zu", n, cap);
                    return HAIFU_BUFFER_TOO_SMALL;
                }
                if (n) memcpy(buf, scratch, (size_t)n);
                *out_len = (size_t)n;
                return HAIFU_OK;
            }
        }
        if (deadline != UINT64_MAX && now_ns() >= deadline) return HAIFU_TIMEOUT;
    }
}

static void up_close(HaifuHandle h) {
    Group *g = h;
    if (!g) return;
    close(g->fd);
    pthread_mutex_destroy(&g->pace_lock);
    free(g);
}

static HaifuStatus up_local_addr(HaifuHandle h, uint8_t *buf, size_t cap, size_t *out_len,
                                 HaifuErrorBuf *e) {
    Group *g = h;
    if (!g || !out_len) return HAIFU_INVALID_ARGUMENT;
    char a[INET_ADDRSTRLEN] = "?", text[64];
    inet_ntop(AF_INET, &g->self.sin_addr, a, sizeof a);
    int n = snprintf(text, sizeof text, "%s:%u", a, ntohs(g->self.sin_port));
    *out_len = (size_t)n;
    if ((size_t)n > cap || !buf) {
        set_err(e, "buffer of %zu bytes, %d needed", cap, n);
        return HAIFU_BUFFER_TOO_SMALL;
    }
    memcpy(buf, text, (size_t)n);
    return HAIFU_OK;
}

static const HaifuPluginVTable table = {
    .abi_version = HAIFU_ABI_VERSION,
    .struct_size = sizeof(HaifuPluginVTable),
    .name = {(const uint8_t *)"udp-peers", 9},
    .version = {(const uint8_t *)"0.1.0", 5},
    .shapes = HAIFU_SHAPE_DATAGRAM,
    .init = up_init,
    .shutdown = up_shutdown,
    .group_open = up_open,
    .group_send = up_send,
    .group_recv = up_recv,
    .group_close = up_close,
    .group_local_addr = up_local_addr,
};

const HaifuPluginVTable *haifu_transport_entry(void) { return &table; }

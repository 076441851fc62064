/*
 * A transport plugin in plain C against include/haifu_transport.h: it loads,
 * declares the datagram shape, and refuses to open groups with a message.
 * Build: cc -shared -fPIC -I plugins/abi/include -o libhaifu_transport_cdemo.so cdemo.c
 */
#include <string.h>

#include "haifu_transport.h"

static void set_err(HaifuErrorBuf *e, const char *m) {
    if (!e || !e->ptr) return;
    size_t n = strlen(m);
    if (n > e->cap) n = e->cap;
    memcpy(e->ptr, m, n);
    e->len = n;
}

static int instance;

static HaifuStatus my_init(const uint8_t *c, size_t n, HaifuHandle *out, HaifuErrorBuf *e) {
    (void)c; (void)n; (void)e;
    *out = &instance;
    return HAIFU_OK;
}
static void my_shutdown(HaifuHandle p) { (void)p; }
static HaifuStatus my_open(HaifuHandle p, const uint8_t *c, size_t n, HaifuHandle *out,
                           HaifuErrorBuf *e) {
    (void)p; (void)c; (void)n; (void)out;
    set_err(e, "no groups here");
    return HAIFU_IO;
}
static HaifuStatus my_send(HaifuHandle g, const uint8_t *d, size_t n, HaifuErrorBuf *e) {
    (void)g; (void)d; (void)n; (void)e;
    return HAIFU_UNSUPPORTED;
}
static HaifuStatus my_recv(HaifuHandle g, uint8_t *b, size_t cap, size_t *len, uint64_t t,
                           HaifuErrorBuf *e) {
    (void)g; (void)b; (void)cap; (void)len; (void)t; (void)e;
    return HAIFU_UNSUPPORTED;
}
static void my_close(HaifuHandle g) { (void)g; }

static const HaifuPluginVTable table = {
    .abi_version = HAIFU_ABI_VERSION,
    .struct_size = sizeof(HaifuPluginVTable),
    .name = {(const uint8_t *)"cdemo", 5},
    .version = {(const uint8_t *)"0.1.0", 5},
    .shapes = HAIFU_SHAPE_DATAGRAM,
    .init = my_init,
    .shutdown = my_shutdown,
    .group_open = my_open,
    .group_send = my_send,
    .group_recv = my_recv,
    .group_close = my_close,
};

const HaifuPluginVTable *haifu_transport_entry(void) { return &table; }

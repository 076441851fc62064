/*
 * haifu transport plugin ABI, version 1. See SPEC.md beside this folder.
 * Same layout as haifu-transport-abi's src/raw.rs.
 */
#ifndef HAIFU_TRANSPORT_H
#define HAIFU_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAIFU_ABI_VERSION 1u
#define HAIFU_ENTRY_SYMBOL "haifu_transport_entry"

#define HAIFU_SHAPE_DATAGRAM 1u
#define HAIFU_SHAPE_STREAM 2u

#define HAIFU_TIMEOUT_INFINITE UINT64_MAX

/* The most datagrams a host passes to one group_send_batch or
 * group_recv_batch call (Linux's UIO_MAXIOV). */
#define HAIFU_BATCH_MAX 1024u

typedef int32_t HaifuStatus;
#define HAIFU_OK 0
#define HAIFU_INTERNAL (-1)
#define HAIFU_INVALID_ARGUMENT (-2)
#define HAIFU_IO (-3)
#define HAIFU_TIMEOUT (-4)
#define HAIFU_CLOSED (-5)
#define HAIFU_DENIED (-6)
#define HAIFU_TOO_LARGE (-7)
#define HAIFU_BUFFER_TOO_SMALL (-8)
#define HAIFU_UNSUPPORTED (-9)
#define HAIFU_PANIC (-10)

typedef void *HaifuHandle;

typedef struct HaifuBytes {
    const uint8_t *ptr;
    size_t len;
} HaifuBytes;

/* Owned by the caller; the plugin writes at most cap bytes and sets len. */
typedef struct HaifuErrorBuf {
    uint8_t *ptr;
    size_t cap;
    size_t len;
} HaifuErrorBuf;

typedef struct HaifuPluginVTable {
    uint32_t abi_version; /* HAIFU_ABI_VERSION */
    size_t struct_size;   /* sizeof(HaifuPluginVTable) */
    HaifuBytes name;      /* a-z 0-9 - _, 1..64 bytes */
    HaifuBytes version;
    uint32_t shapes;      /* HAIFU_SHAPE_* bits */

    HaifuStatus (*init)(const uint8_t *config, size_t config_len, HaifuHandle *out_plugin,
                        HaifuErrorBuf *err);
    void (*shutdown)(HaifuHandle plugin);

    /* datagram groups */
    HaifuStatus (*group_open)(HaifuHandle plugin, const uint8_t *config, size_t config_len,
                              HaifuHandle *out_group, HaifuErrorBuf *err);
    HaifuStatus (*group_send)(HaifuHandle group, const uint8_t *data, size_t len,
                              HaifuErrorBuf *err);
    HaifuStatus (*group_recv)(HaifuHandle group, uint8_t *buf, size_t cap, size_t *out_len,
                              uint64_t timeout_ms, HaifuErrorBuf *err);
    void (*group_close)(HaifuHandle group);

    /* peer streams */
    HaifuStatus (*endpoint_open)(HaifuHandle plugin, const uint8_t *config, size_t config_len,
                                 HaifuHandle *out_endpoint, HaifuErrorBuf *err);
    HaifuStatus (*endpoint_local_addr)(HaifuHandle endpoint, uint8_t *buf, size_t cap,
                                       size_t *out_len, HaifuErrorBuf *err);
    HaifuStatus (*endpoint_accept)(HaifuHandle endpoint, uint64_t timeout_ms,
                                   HaifuHandle *out_conn, HaifuErrorBuf *err);
    HaifuStatus (*endpoint_connect)(HaifuHandle endpoint, const uint8_t *addr, size_t addr_len,
                                    const uint8_t *server_name, size_t server_name_len,
                                    uint64_t timeout_ms, HaifuHandle *out_conn,
                                    HaifuErrorBuf *err);
    HaifuStatus (*endpoint_set_denied)(HaifuHandle endpoint, const uint8_t *list, size_t len,
                                       HaifuErrorBuf *err);
    void (*endpoint_close)(HaifuHandle endpoint);
    HaifuStatus (*conn_peer_identity)(HaifuHandle conn, uint8_t *buf, size_t cap,
                                      size_t *out_len, HaifuErrorBuf *err);
    HaifuStatus (*conn_send)(HaifuHandle conn, const uint8_t *data, size_t len,
                             uint64_t timeout_ms, HaifuErrorBuf *err);
    /* *out_ptr stays valid until the next conn_recv or conn_close on conn. */
    HaifuStatus (*conn_recv)(HaifuHandle conn, const uint8_t **out_ptr, size_t *out_len,
                             uint64_t timeout_ms, HaifuErrorBuf *err);
    void (*conn_close)(HaifuHandle conn);

    /* Appended later in ABI 1 (a host treats fields beyond struct_size as
     * NULL). Optional: the role the peer's credentials grant ("master",
     * "relay" or "client"), or empty text when they grant none. */
    HaifuStatus (*conn_peer_role)(HaifuHandle conn, uint8_t *buf, size_t cap,
                                  size_t *out_len, HaifuErrorBuf *err);
    /* Appended later in ABI 1. Optional: the local address a group is bound
     * to as text ("0.0.0.0:47000"), e.g. the port the kernel chose. */
    HaifuStatus (*group_local_addr)(HaifuHandle group, uint8_t *buf, size_t cap,
                                    size_t *out_len, HaifuErrorBuf *err);
    /* Appended later in ABI 1. Optional (SPEC 5.8): send datagrams[0..count)
     * in order, as group_send would each (sendmmsg). OK: the first *out_sent
     * (1..count) went out; fewer than count is not an error, the host calls
     * again with the rest. Error: *out_sent went out before the one that
     * failed, and the status is that one's. count <= HAIFU_BATCH_MAX. */
    HaifuStatus (*group_send_batch)(HaifuHandle group, const HaifuBytes *datagrams,
                                    size_t count, size_t *out_sent, HaifuErrorBuf *err);
    /* Appended later in ABI 1. Optional (SPEC 5.9): wait up to timeout_ms for
     * one datagram, then take those already queued, up to max_count
     * (recvmmsg with MSG_WAITFORONE). Datagram i goes to buf + i * stride,
     * its length to out_lens[i]; one longer than stride is dropped and
     * reported with its real length (> stride). OK: *out_count is
     * 1..max_count. No datagram: HAIFU_TIMEOUT, nothing consumed. */
    HaifuStatus (*group_recv_batch)(HaifuHandle group, uint8_t *buf, size_t stride,
                                    size_t max_count, size_t *out_lens, size_t *out_count,
                                    uint64_t timeout_ms, HaifuErrorBuf *err);
} HaifuPluginVTable;

/* The one symbol a plugin exports. */
const HaifuPluginVTable *haifu_transport_entry(void);

#ifdef __cplusplus
}
#endif

/*
 * A minimal C plugin (datagram shape, every call fails politely):
 *
 *   #include <string.h>
 *   #include "haifu_transport.h"
 *
 *   static void set_err(HaifuErrorBuf *e, const char *m) {
 *       if (!e || !e->ptr) return;
 *       size_t n = strlen(m); if (n > e->cap) n = e->cap;
 *       memcpy(e->ptr, m, n); e->len = n;
 *   }
 *   static int instance;
 *   static HaifuStatus my_init(const uint8_t *c, size_t n, HaifuHandle *out,
 *                              HaifuErrorBuf *e) { *out = &instance; return HAIFU_OK; }
 *   static void my_shutdown(HaifuHandle p) {}
 *   static HaifuStatus my_open(HaifuHandle p, const uint8_t *c, size_t n, HaifuHandle *out,
 *                              HaifuErrorBuf *e) { set_err(e, "no groups here"); return HAIFU_IO; }
 *   static HaifuStatus my_send(HaifuHandle g, const uint8_t *d, size_t n,
 *                              HaifuErrorBuf *e) { return HAIFU_UNSUPPORTED; }
 *   static HaifuStatus my_recv(HaifuHandle g, uint8_t *b, size_t cap, size_t *len,
 *                              uint64_t t, HaifuErrorBuf *e) { return HAIFU_UNSUPPORTED; }
 *   static void my_close(HaifuHandle g) {}
 *
 *   static const HaifuPluginVTable table = {
 *       .abi_version = HAIFU_ABI_VERSION,
 *       .struct_size = sizeof(HaifuPluginVTable),
 *       .name = { (const uint8_t *)"cdemo", 5 },
 *       .version = { (const uint8_t *)"0.1.0", 5 },
 *       .shapes = HAIFU_SHAPE_DATAGRAM,
 *       .init = my_init, .shutdown = my_shutdown,
 *       .group_open = my_open, .group_send = my_send,
 *       .group_recv = my_recv, .group_close = my_close,
 *   };
 *   const HaifuPluginVTable *haifu_transport_entry(void) { return &table; }
 *
 * Build: cc -shared -fPIC -o libhaifu_transport_cdemo.so cdemo.c
 */

#endif /* HAIFU_TRANSPORT_H */

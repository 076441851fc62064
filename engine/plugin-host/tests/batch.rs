//! The batched datagram calls (SPEC §5.8–5.10) through the loader, against
//! C plugins: one built before the calls were appended (the host falls
//! back to one datagram per call), and one whose calls lie about what they
//! did (the host refuses the counts with an error, never reads beyond what
//! it passed, never panics).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use haifu_plugin_host::{ErrorKind, Plugin, RecvBatch};

/// A datagram plugin whose groups each hold an in-memory queue: what a
/// group sends, it receives. `mode=N` in a group's configuration picks how
/// its batched calls behave; `group_local_addr` reports how often they were
/// called.
const SOURCE: &str = r#"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "haifu_transport.h"

#define QCAP 256
#define DMAX 2048
typedef struct {
    int mode;
    size_t head, len;
    size_t lens[QCAP];
    uint8_t data[QCAP][DMAX];
    unsigned long batch_calls;
} Group;

static int inst;
static HaifuStatus i_(const uint8_t *c, size_t n, HaifuHandle *o, HaifuErrorBuf *e) {
    (void)c; (void)n; (void)e; *o = &inst; return HAIFU_OK; }
static void s_(HaifuHandle p) { (void)p; }
static HaifuStatus op(HaifuHandle p, const uint8_t *c, size_t n, HaifuHandle *o, HaifuErrorBuf *e) {
    (void)p; (void)e;
    Group *g = calloc(1, sizeof *g);
    if (!g) return HAIFU_INTERNAL;
    char text[256] = {0};
    memcpy(text, c, n < sizeof text - 1 ? n : sizeof text - 1);
    const char *m = strstr(text, "mode=");
    g->mode = m ? atoi(m + 5) : 0;
    *o = g;
    return HAIFU_OK;
}
static HaifuStatus push(Group *g, const uint8_t *d, size_t n) {
    if (n > DMAX) return HAIFU_TOO_LARGE;
    if (g->len == QCAP) return HAIFU_IO;
    size_t at = (g->head + g->len) % QCAP;
    memcpy(g->data[at], d, n);
    g->lens[at] = n;
    g->len++;
    return HAIFU_OK;
}
static HaifuStatus sd(HaifuHandle h, const uint8_t *d, size_t n, HaifuErrorBuf *e) {
    (void)e; return push((Group *)h, d, n); }
static HaifuStatus rv(HaifuHandle h, uint8_t *b, size_t cap, size_t *l, uint64_t t, HaifuErrorBuf *e) {
    (void)t; (void)e;
    Group *g = h;
    if (g->len == 0) return HAIFU_TIMEOUT;
    size_t n = g->lens[g->head];
    *l = n;
    g->head = (g->head + 1) % QCAP;
    g->len--;
    if (n > cap) return HAIFU_BUFFER_TOO_SMALL;
    memcpy(b, g->data[(g->head + QCAP - 1) % QCAP], n);
    return HAIFU_OK;
}
static void cl(HaifuHandle h) { free(h); }
static HaifuStatus la(HaifuHandle h, uint8_t *b, size_t cap, size_t *l, HaifuErrorBuf *e) {
    (void)e;
    char text[64];
    int n = snprintf(text, sizeof text, "batch_calls=%lu", ((Group *)h)->batch_calls);
    *l = (size_t)n;
    if ((size_t)n > cap) return HAIFU_BUFFER_TOO_SMALL;
    memcpy(b, text, (size_t)n);
    return HAIFU_OK;
}

#ifdef WITH_BATCH
static HaifuStatus sb(HaifuHandle h, const HaifuBytes *d, size_t count, size_t *sent, HaifuErrorBuf *e) {
    Group *g = h;
    g->batch_calls++;
    switch (g->mode) {
    case 1: *sent = count + 5; return HAIFU_OK;          /* more than it was given */
    case 2: *sent = 0; return HAIFU_OK;                   /* success, nothing sent */
    case 3:                                               /* two, then a failure */
        push(g, d[0].ptr, d[0].len); push(g, d[1].ptr, d[1].len);
        *sent = 2;
        if (e && e->ptr) { memcpy(e->ptr, "third failed", 12); e->len = 12; }
        return HAIFU_IO;
    case 4: *sent = count; return HAIFU_IO;               /* failed, yet all sent */
    default: return HAIFU_UNSUPPORTED;
    }
}
static HaifuStatus rb(HaifuHandle h, uint8_t *b, size_t stride, size_t max, size_t *lens,
                      size_t *count, uint64_t t, HaifuErrorBuf *e) {
    (void)t; (void)e;
    Group *g = h;
    g->batch_calls++;
    switch (g->mode) {
    case 5: *count = max + 1; return HAIFU_OK;            /* more than the slots */
    case 6: *count = 0; return HAIFU_OK;                  /* success, nothing */
    case 7:                                               /* an absurd length, then a real one */
        lens[0] = SIZE_MAX;
        memset(b + stride, 0xAB, stride);
        lens[1] = stride;
        *count = 2;
        return HAIFU_OK;
    case 8: *count = 1; lens[0] = 3; return HAIFU_TIMEOUT; /* an error with a count */
    default: return HAIFU_UNSUPPORTED;
    }
}
#endif

static const HaifuPluginVTable t = {
    .abi_version = HAIFU_ABI_VERSION,
    .struct_size = TABLE_SIZE,
    .name = {(const uint8_t *)NAME, sizeof NAME - 1},
    .version = {(const uint8_t *)"0.1.0", 5},
    .shapes = HAIFU_SHAPE_DATAGRAM,
    .init = i_, .shutdown = s_, .group_open = op, .group_send = sd,
    .group_recv = rv, .group_close = cl, .group_local_addr = la,
#ifdef WITH_BATCH
    .group_send_batch = sb, .group_recv_batch = rb,
#endif
};
const HaifuPluginVTable *haifu_transport_entry(void) { return &t; }
"#;

/// Builds [`SOURCE`] into `dir` with `defines`; `None` without a C compiler.
fn build(dir: &Path, name: &str, defines: &[&str]) -> Option<PathBuf> {
    let abi = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/abi");
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, SOURCE).unwrap();
    let out = dir.join(haifu_plugin_host::plugin_file_name(name));
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-I"])
        .arg(abi.join("include"))
        .arg(format!("-DNAME=\"{name}\""))
        .args(defines)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .ok()?;
    assert!(status.success(), "cc failed for {name}");
    Some(out)
}

fn batch_calls(g: &haifu_plugin_host::DatagramGroup) -> u64 {
    let text = g.local_addr().unwrap().unwrap();
    text.strip_prefix("batch_calls=").unwrap().parse().unwrap()
}

/// Sends 64 numbered datagrams as a batch and receives them as batches of
/// 24: all arrive, in order, whichever way the plugin moves them.
fn sixty_four_round_trip(p: &Plugin, config: &str) -> haifu_plugin_host::DatagramGroup {
    let g = p.open_group(config).unwrap();
    let datagrams: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    let mut rest = &refs[..];
    while !rest.is_empty() {
        rest = &rest[g.send_batch(rest).unwrap()..];
    }
    let mut batch = RecvBatch::new(24, 2048);
    let mut got = Vec::new();
    for want in [24, 24, 16] {
        assert_eq!(
            g.recv_batch(&mut batch, Some(Duration::ZERO)).unwrap(),
            want
        );
        assert_eq!(batch.too_large(), 0);
        got.extend(batch.datagrams().map(<[u8]>::to_vec));
    }
    assert_eq!(got, datagrams);
    let e = g.recv_batch(&mut batch, Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(batch.is_empty());
    g
}

#[test]
fn a_plugin_built_before_the_batched_calls_gets_one_datagram_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let Some(old) = build(
        dir.path(),
        "before_batch",
        &["-DTABLE_SIZE=offsetof(HaifuPluginVTable, group_send_batch)"],
    ) else {
        eprintln!("no C compiler: skipped");
        return;
    };
    let p = haifu_plugin_host::load(&old).unwrap();
    sixty_four_round_trip(&p, "");
    // A too-large datagram in a batch: those before it go, then it fails.
    let g = p.open_group("").unwrap();
    let (small, big) = (vec![1u8; 10], vec![2u8; 5000]);
    assert_eq!(g.send_batch(&[&small, &small, &big, &small]).unwrap(), 2);
    let e = g.send_batch(&[&big, &small]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    // A too-small stride: the datagram is dropped and counted.
    let mut batch = RecvBatch::new(8, 4);
    g.send(&small).unwrap();
    assert_eq!(g.recv_batch(&mut batch, Some(Duration::ZERO)).unwrap(), 3);
    assert_eq!(batch.too_large(), 3);
    assert_eq!(batch.datagrams().count(), 0);
}

#[test]
fn a_plugin_answering_unsupported_is_asked_once_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let Some(file) = build(
        dir.path(),
        "unsupported",
        &["-DWITH_BATCH", "-DTABLE_SIZE=sizeof(HaifuPluginVTable)"],
    ) else {
        eprintln!("no C compiler: skipped");
        return;
    };
    let p = haifu_plugin_host::load(&file).unwrap();
    let g = sixty_four_round_trip(&p, "mode=0");
    // One send_batch and one recv_batch call answered UNSUPPORTED; the
    // other calls went one datagram at a time without asking again.
    assert_eq!(batch_calls(&g), 2);
}

#[test]
fn counts_a_plugin_makes_up_are_refused_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let Some(file) = build(
        dir.path(),
        "liar",
        &["-DWITH_BATCH", "-DTABLE_SIZE=sizeof(HaifuPluginVTable)"],
    ) else {
        eprintln!("no C compiler: skipped");
        return;
    };
    let p = haifu_plugin_host::load(&file).unwrap();
    let d = [7u8; 32];
    let four: [&[u8]; 4] = [&d, &d, &d, &d];

    let e = p
        .open_group("mode=1")
        .unwrap()
        .send_batch(&four)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert!(e.message.contains("reported 9 of 4 datagrams sent"), "{e}");

    let e = p
        .open_group("mode=2")
        .unwrap()
        .send_batch(&four)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert!(e.message.contains("reported 0 of 4"), "{e}");

    // Two went out before the third failed: they count as sent, so the
    // caller does not send them twice, and its next call meets the error.
    let g = p.open_group("mode=3").unwrap();
    assert_eq!(g.send_batch(&four).unwrap(), 2);
    let mut batch = RecvBatch::new(8, 64);
    assert_eq!(g.recv(&mut [0u8; 64], Some(Duration::ZERO)).unwrap(), 32);
    assert_eq!(g.recv(&mut [0u8; 64], Some(Duration::ZERO)).unwrap(), 32);

    let e = p
        .open_group("mode=4")
        .unwrap()
        .send_batch(&four)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io, "{e}");
    assert!(e.message.contains("reported 4 of 4 datagrams sent"), "{e}");

    let e = p
        .open_group("mode=5")
        .unwrap()
        .recv_batch(&mut batch, None)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert!(
        e.message.contains("9 datagrams received into 8 slots"),
        "{e}"
    );
    assert!(batch.is_empty());
    assert_eq!(batch.datagrams().count(), 0);

    let e = p
        .open_group("mode=6")
        .unwrap()
        .recv_batch(&mut batch, None)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");

    // An absurd length is a dropped datagram, never a read beyond a slot.
    let g = p.open_group("mode=7").unwrap();
    assert_eq!(g.recv_batch(&mut batch, None).unwrap(), 2);
    assert_eq!(batch.too_large(), 1);
    let got: Vec<&[u8]> = batch.datagrams().collect();
    assert_eq!(got, vec![&[0xABu8; 64][..]]);

    // An error is an error, whatever count came with it.
    let e = p
        .open_group("mode=8")
        .unwrap()
        .recv_batch(&mut batch, None)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(batch.is_empty());
}

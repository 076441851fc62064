#!/usr/bin/env python3
"""Regenerates examples/artifacts/pos-app-2.3.0.tar and pos-app-2.4.0.tar.

A small but realistic point-of-sale application bundle: a pseudo-binary
with code-like structure, configuration, translations and a changelog. 2.4.0
differs from 2.3.0 the way a minor release does (some functions changed, a
service added, a translation updated), so deltas between them are
meaningful. Deterministic: the same bytes on every run.
"""
import io
import random
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "artifacts"
MTIME = 1764547200  # 2025-12-01T00:00:00Z, fixed for reproducible tars


def pseudo_binary(rng, n_funcs, changed=()):
    out = bytearray(b"\x7fELF\x02\x01\x01" + bytes(9))
    for i in range(n_funcs):
        frng = random.Random(i * 7919 + (1000003 if i in changed else 0))
        body = bytes(frng.choice(b"\x48\x89\xe5\x8b\x45\xfc\x83\xc0\x01\x5d\xc3\x0f\x1f\x44\x00\xe8")
                     for _ in range(frng.randint(64, 512)))
        out += f"fn_{i:05d}\0".encode() + body
    return bytes(out)


def files(version):
    minor = int(version.split(".")[1])
    rng = random.Random(42)
    changed = set(range(0, 1200, 97)) if minor >= 4 else set()
    services = ["checkout", "returns", "loyalty"] + (["contactless-refund"] if minor >= 4 else [])
    yield "pos-app/bin/pos-app", pseudo_binary(rng, 1200, changed)
    yield "pos-app/etc/pos-app.toml", (
        f'version = "{version}"\n[services]\n'
        + "".join(f'{s} = {{ enabled = true, since = "2.{2 if s != "contactless-refund" else 4}.0" }}\n'
                  for s in services)
    ).encode()
    for lang in ["en", "ja", "de", "fr"]:
        lines = [f"msg_{k:04d} = \"{lang} text {k} {'v' + version if k % 50 == 0 else ''}\"" for k in range(800)]
        yield f"pos-app/share/i18n/{lang}.ftl", ("\n".join(lines) + "\n").encode()
    log = "".join(f"## 2.{m}.0\n- fixes and improvements ({m})\n" for m in range(minor, -1, -1))
    yield "pos-app/CHANGELOG.md", log.encode()


def build(version):
    path = HERE / f"pos-app-{version}.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files(version):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), MTIME, 0o755 if "/bin/" in name else 0o644
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    print(f"{path.name}: {len(buf.getvalue())} bytes")


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    for v in ["2.3.0", "2.4.0"]:
        build(v)

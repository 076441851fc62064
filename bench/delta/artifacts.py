#!/usr/bin/env python3
"""Turns two downloaded wheels into two artifacts haifu would distribute:
each wheel unpacked and re-packed as a deterministic tar (sorted names,
mtime 0, uid/gid 0), so the only differences are the program's own.

Usage: artifacts.py OLD.whl NEW.whl OUT_DIR   -> OUT_DIR/old.tar, OUT_DIR/new.tar
"""
import io
import os
import sys
import tarfile
import zipfile


def repack(wheel, out):
    with zipfile.ZipFile(wheel) as z, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as t:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            data = z.read(info)
            # Strip the version from top-level folder names, as an installer
            # would lay the program out under a fixed path.
            parts = info.filename.split("/")
            if "-" in parts[0]:
                parts[0] = parts[0].split("-")[0] + "." + parts[0].rsplit(".", 1)[-1]
            ti = tarfile.TarInfo("/".join(parts))
            ti.size = len(data)
            ti.mtime = 0
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            ti.mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
            t.addfile(ti, io.BytesIO(data))


def main():
    old, new, out = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    repack(old, os.path.join(out, "old.tar"))
    repack(new, os.path.join(out, "new.tar"))


if __name__ == "__main__":
    main()

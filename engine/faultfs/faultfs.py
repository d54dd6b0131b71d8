#!/usr/bin/python3
"""A FUSE filesystem for fault tests of the store: power cuts, fsync errors, a full disk.

    faultfs.py BACKING MOUNTPOINT CONTROL_SOCKET

Passes every operation through to BACKING, and remembers, per file, what each write and
truncate since that file's last successful fsync/fdatasync replaced (the LazyFS approach). Lines
sent to CONTROL_SOCKET (a Unix stream socket; each gets "ok" or "error ..." back):

    crash                      the power cut: undo every write not yet fsynced, newest first
                               (stop the engine first, and remount before reading again)
    crash torn SEED            a harsher one: each 4 KiB page an unsynced write touched keeps
                               its new bytes or loses them, at random (a write reaches the disk
                               in pieces, in any order)
    fail-fsync SUFFIX N        the next N fsyncs of a file whose path ends with SUFFIX fail with
                               EIO, and what they covered stays lost at the crash even if a later
                               fsync succeeds (Linux's behaviour that PostgreSQL met in 2018)
    fail-write SUFFIX N        the next N writes to such a file fail with EIO
    full on|off                every write that would grow a file fails with ENOSPC
    stats                      "ok WRITES FSYNCS PENDING_FILES"

Metadata (create, rename, unlink) is not undone: this layer cuts data, as ext4's ordered mode
keeps metadata consistent. Runs in the foreground; stop it with `fusermount -u MOUNTPOINT`.
"""

import errno
import os
import random
import socket
import sys
import threading

from fusepy import FUSE, FuseOSError, Operations

PAGE = 4096


class FaultFS(Operations):
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.mutex = threading.Lock()
        self.pending = {}  # path -> [(offset, old bytes, old size)] since the last fsync
        self.lost = {}  # path -> the same, for writes a failed fsync covered
        self.fail_fsync = []  # [suffix, remaining]
        self.fail_write = []
        self.full = False
        self.writes = 0
        self.fsyncs = 0

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    # --- faults -----------------------------------------------------------------------------

    def control(self, line):
        words = line.split()
        with self.mutex:
            if words == ["crash"] or (len(words) == 3 and words[:2] == ["crash", "torn"]):
                keep = random.Random(int(words[2])) if len(words) == 3 else None
                undone = 0
                for table in (self.pending, self.lost):
                    for path, edits in table.items():
                        undone += self._undo(path, edits, keep)
                    table.clear()
                return "ok %d" % undone
            if len(words) == 3 and words[0] in ("fail-fsync", "fail-write"):
                target = self.fail_fsync if words[0] == "fail-fsync" else self.fail_write
                target.append([words[1], int(words[2])])
                return "ok"
            if len(words) == 2 and words[0] == "full":
                self.full = words[1] == "on"
                return "ok"
            if words == ["stats"]:
                return "ok %d %d %d" % (self.writes, self.fsyncs, len(self.pending))
        return "error unknown command: " + line

    def _undo(self, path, edits, keep=None):
        full = self._full(path)
        if not os.path.exists(full):
            return 0
        fd = os.open(full, os.O_RDWR)
        try:
            if keep is None:
                for offset, old, size, _ in reversed(edits):
                    if old:
                        os.pwrite(fd, old, offset)
                    os.ftruncate(fd, size)
                return len(edits)
            # Torn: each page decides once whether it reached the disk; a page that did not
            # goes back to what it held before the oldest unsynced write (zeros past the old
            # end of the file). Sizes stay as they are; a truncate is undone whole.
            revert = {}
            for offset, old, size, length in reversed(edits):
                if length is None:
                    if old:
                        os.pwrite(fd, old, offset)
                    os.ftruncate(fd, size)
                    continue
                for page in range(offset // PAGE, (offset + length + PAGE - 1) // PAGE):
                    if page not in revert:
                        revert[page] = keep.random() < 0.5
                    if not revert[page]:
                        continue
                    lo, hi = max(page * PAGE, offset), min((page + 1) * PAGE, offset + length)
                    before = (old + b"\0" * length)[lo - offset:hi - offset]
                    os.pwrite(fd, before, lo)
            return len(edits)
        finally:
            os.close(fd)

    @staticmethod
    def _hit(faults, path):
        for f in faults:
            if f[1] > 0 and path.endswith(f[0]):
                f[1] -= 1
                return True
        return False

    def _remember(self, path, fd, offset, length, truncate=False):
        """Keep what [offset, offset+length) of the file holds now, its size, and the length
        written (None for a truncate)."""
        size = os.fstat(fd).st_size
        old = os.pread(fd, max(0, min(length, size - offset)), offset) if offset < size else b""
        self.pending.setdefault(path, []).append((offset, old, size, None if truncate else length))
        return size

    # --- files --------------------------------------------------------------------------------

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def access(self, path, mode):
        if not os.access(self._full(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        return os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        return os.chown(self._full(path), uid, gid)

    def mkdir(self, path, mode):
        return os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        return os.rmdir(self._full(path))

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def unlink(self, path):
        with self.mutex:
            self.pending.pop(path, None)
            self.lost.pop(path, None)
        return os.unlink(self._full(path))

    def rename(self, old, new):
        with self.mutex:
            for table in (self.pending, self.lost):
                table.pop(new, None)
                if old in table:
                    table[new] = table.pop(old)
        return os.rename(self._full(old), self._full(new))

    def utimens(self, path, times=None):
        return os.utime(self._full(path), times)

    def open(self, path, flags):
        return os.open(self._full(path), flags & ~os.O_APPEND)

    def create(self, path, mode, fi=None):
        fd = os.open(self._full(path), os.O_RDWR | os.O_CREAT, mode)
        return fd

    def read(self, path, length, offset, fh):
        return os.pread(fh, length, offset)

    def write(self, path, data, offset, fh):
        with self.mutex:
            self.writes += 1
            if self._hit(self.fail_write, path):
                raise FuseOSError(errno.EIO)
            size = os.fstat(fh).st_size
            if self.full and offset + len(data) > size:
                raise FuseOSError(errno.ENOSPC)
            self._remember(path, fh, offset, len(data))
            return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        with self.mutex:
            fd = os.open(self._full(path), os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                if self.full and length > size:
                    raise FuseOSError(errno.ENOSPC)
                if length < size:
                    self._remember(path, fd, length, size - length, truncate=True)
                else:
                    self.pending.setdefault(path, []).append((size, b"", size, None))
                os.ftruncate(fd, length)
            finally:
                os.close(fd)

    def fallocate(self, path, mode, offset, length, fh):
        raise FuseOSError(errno.EOPNOTSUPP)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return os.close(fh)

    def fsync(self, path, datasync, fh):
        with self.mutex:
            self.fsyncs += 1
            if self._hit(self.fail_fsync, path):
                # The kernel marks the pages clean and forgets them: they are lost at the power
                # cut whatever a later fsync says.
                self.lost.setdefault(path, []).extend(self.pending.pop(path, []))
                raise FuseOSError(errno.EIO)
            os.fsync(fh)
            self.pending.pop(path, None)
            return 0

    def fsyncdir(self, path, datasync, fh):
        return 0


def serve_control(fs, sock_path):
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(4)

    def handle(conn):
        with conn, conn.makefile("rw") as f:
            for line in f:
                f.write(fs.control(line.strip()) + "\n")
                f.flush()

    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    root, mount, control = sys.argv[1:]
    fs = FaultFS(root)
    threading.Thread(target=serve_control, args=(fs, control), daemon=True).start()
    # big_writes: libfuse 2 otherwise splits every write into 4 KiB calls.
    FUSE(fs, mount, foreground=True, nothreads=False, big_writes=True)


if __name__ == "__main__":
    main()

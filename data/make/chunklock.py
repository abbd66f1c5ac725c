# SPDX-License-Identifier: MIT
"""Chunk locks so that two generator processes can share a list of chunks.

A lock is data/make/work/locks/<name>.lock holding the owner's PID, created with
O_EXCL; a lock whose process is gone (killed job, previous session) is taken over.
"""
import os

LOCKDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'work', 'locks')


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return b'python' in f.read()
    except OSError:
        return False


def acquire(name):
    os.makedirs(LOCKDIR, exist_ok=True)
    path = os.path.join(LOCKDIR, name + '.lock')
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return True
        except FileExistsError:
            try:
                pid = int(open(path).read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and (pid == os.getpid() or _alive(pid)):
                return False
            try:
                os.remove(path)
            except OSError:
                pass
    return False


def release(name):
    try:
        os.remove(os.path.join(LOCKDIR, name + '.lock'))
    except OSError:
        pass

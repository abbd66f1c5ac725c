#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Processor time of one command (python3 standard library only).

  python3 bench/peers/cputime.py RESULT_FILE COMMAND [ARGS...]

Runs COMMAND (stdout/stderr passed through), then writes one line
'cpu_s U+S maxrss_mb R exit C' to RESULT_FILE: user + system processor seconds of
the child and its children (os.wait4, nanosecond-based accounting, unlike the
10 ms steps of /usr/bin/time's output) and its peak resident set size.
Exit status: that of COMMAND.
"""
import os
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(sys.argv[2], sys.argv[2:])
        except OSError as e:
            sys.stderr.write("cputime: cannot run %s: %s\n" % (sys.argv[2], e))
        os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(sys.argv[1], "w") as f:
        f.write("cpu_s %.6f maxrss_mb %.1f exit %d\n" % (ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, code))
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()

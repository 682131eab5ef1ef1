"""What the daemon asks of the C runtime so that months of uptime fit a 512 MB board.

Measured on the benchmark's load (hands-free streaming, a 640×480 frame every second; see
docs/performance.md): with glibc's defaults the daemon settles about 6 MB higher than it needs.
Two habits of glibc's malloc cause it, and both are tunable only from inside the process (the
`MALLOC_*` variables would have to be set by whoever starts us, and `omnid run` is started by hand
as often as by systemd):

- The mmap threshold adapts upwards: once a large block (a decoded camera frame, a base64 image,
  an answer's audio) is freed, blocks that size are carved from the heap from then on, where they
  fragment it and are rarely given back. A fixed 128 KB threshold keeps every large buffer in its
  own mapping, returned to the kernel on free.
- Each thread that allocates gets its own arena (up to 8 per core), each holding on to what its
  thread once needed. The daemon's threads do little allocation; two arenas serve them all.

numpy's OpenBLAS would start one worker thread per core at import, for linear algebra the daemon
never does; one is enough.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENA_MAX = 2


def tune_process() -> None:
    """Call first thing in `omnid run`, before numpy is imported and before any thread starts.
    Without glibc (musl) this does nothing."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_ARENA_MAX, ARENA_MAX)):
        log.debug("mallopt refused the memory settings; glibc defaults apply")

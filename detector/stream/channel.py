"""``Channel``: a bounded FIFO between two threads, or a one-item mailbox that keeps only the
newest item. Several channels may share one condition variable, so that one thread can wait
for whichever of them has an item first (the inference thread of a run over many sources)."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import List, Optional

END = object()


class Channel:
    """A bounded FIFO between two threads, or with ``keep_latest`` a one-item mailbox where a
    new item replaces the waiting one (``put`` returns the replaced item). ``cond``: a
    condition shared with other channels (notified on every change of any of them)."""

    def __init__(self, maxsize: int, keep_latest: bool = False,
                 cond: Optional[threading.Condition] = None):
        self.maxsize = 1 if keep_latest else max(1, maxsize)
        self.keep_latest = keep_latest
        self._items: deque = deque()
        self._cond = cond if cond is not None else threading.Condition()
        self._closed = False
        self._aborted = False

    def put(self, item):
        """FIFO: wait for room; returns None, or ``item`` itself if the channel was aborted.
        Mailbox: never waits; returns the item it replaced (None if the box was empty)."""
        with self._cond:
            if self._aborted:
                return item
            if self.keep_latest:
                old = self._items.popleft() if self._items else None
                self._items.append(item)
                self._cond.notify_all()
                return old
            while len(self._items) >= self.maxsize and not self._aborted:
                self._cond.wait()
            if self._aborted:
                return item
            self._items.append(item)
            self._cond.notify_all()
            return None

    def get(self, timeout: Optional[float] = None):
        """The next item; END once closed and empty (or aborted); None on timeout (at once
        with ``timeout=0`` when empty)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed or self._aborted:
                    return END
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._cond.wait(left)
            if self._aborted:
                return END
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abort(self) -> List:
        """Unblock everyone; returns the items that were still queued."""
        with self._cond:
            self._aborted = True
            left = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return left

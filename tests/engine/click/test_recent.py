"""The click tools' store of recent windows: least recently used dropped first, shared by
threads without losing entries."""
from __future__ import annotations

import threading

from engine.click.recent import Recent


def test_the_least_recently_used_is_dropped_first():
    recent: Recent[str] = Recent(size=2)
    recent.put("a", "A")
    recent.put("b", "B")
    assert recent.get("a") == "A"  # "b" is now the oldest
    recent.put("c", "C")
    assert recent.get("b") is None and recent.get("a") == "A" and recent.get("c") == "C"
    assert len(recent) == 2


def test_threads_share_it_without_losing_the_bound():
    recent: Recent[int] = Recent(size=16)

    def work(offset: int) -> None:
        for i in range(500):
            recent.put((offset, i % 40), i)
            recent.get((offset, (i * 7) % 40))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(recent) == 16

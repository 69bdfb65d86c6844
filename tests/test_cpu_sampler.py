"""The bench's CPU sampler reads /proc the way an outsider's tools do: a process that burns a known amount of CPU
(in two threads, told when to by this test) reads as exactly that much, by both readings. Behaviour only: the
numbers asserted are CPU seconds the child itself counted, never a speed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge import bench

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

BURNER = textwrap.dedent("""
    import queue, sys, threading, time
    jobs, done = [queue.Queue(), queue.Queue()], queue.Queue()
    def worker(q):  # lives as long as the process, like the bridge's threads
        while True:
            seconds = q.get()
            t0 = time.thread_time()
            while time.thread_time() - t0 < seconds:
                pass
            done.put(1)
    for q in jobs:
        threading.Thread(target=worker, args=(q,), daemon=True).start()
    for line in sys.stdin:
        share = float(line)  # CPU seconds to burn, split over the two threads
        for q in jobs:
            q.put(share / 2)
        done.get(), done.get()
        print(time.process_time(), flush=True)
""")


@pytest.fixture
def burner():
    p = subprocess.Popen([sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def _burn(p, seconds: float) -> float:
    p.stdin.write(f"{seconds}\n")
    p.stdin.flush()
    return float(p.stdout.readline())


def test_window_reads_what_the_process_burned_in_two_threads(burner):
    b = bench.load()
    _burn(burner, 0.05)  # interpreter up, threads exercised once
    before = _burn(burner, 0.0)
    win = b.CpuWindow(burner.pid).start()
    after = _burn(burner, 0.6)  # two threads of 0.3 s each
    r = win.stop()
    burned = after - before
    assert burned == pytest.approx(0.6, abs=0.05)
    # /proc/<pid>/stat (ticks of 1/CLK_TCK s) and the schedstat nanoseconds both see the two threads' work
    assert r["cpu_s"] == pytest.approx(burned, abs=0.03 + 2 / b.CLK_TCK)
    assert r["sched_cpu_s"] == pytest.approx(burned, abs=0.03)
    assert r["bench_over_independent"] == pytest.approx(1.0, abs=0.1)
    assert r["threads_started"] == 0 and r["threads_ended"] == 0 and r["threads_alive"] == 3
    assert 0 < r["pct_of_all_cores"] <= r["pct_of_one_core"]


def test_whole_process_total_matches_the_process_own_clock(burner):
    b = bench.load()
    own = _burn(burner, 0.4)
    assert b.proc_cpu_s(burner.pid) == pytest.approx(own, abs=0.03 + 2 / b.CLK_TCK)
    threads = b.proc_threads(burner.pid)
    assert burner.pid in threads and len(threads) == 3  # main thread + the two workers
    busy = sorted(v[1] for v in threads.values())[-2:]
    assert sum(busy) == pytest.approx(0.4, abs=0.05)  # the work is in the two worker threads, 0.2 s each
    assert busy[0] == pytest.approx(0.2, abs=0.04)


def test_stat_line_with_an_odd_command_name():
    b = bench.load()
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 30  # utime 250, stime 50 ticks
    line = "4242 (we (ird) na me) " + " ".join(fields)
    assert b._stat_cpu_s(line) == pytest.approx(300 / b.CLK_TCK)

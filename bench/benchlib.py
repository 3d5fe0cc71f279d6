"""What the benchmark scripts share: peak RSS of a process tree, percentiles, MiB."""
import threading

import psutil


class TreeRss:
    """Peak RSS of a process and all its descendants, sampled every 50 ms in a thread."""

    def __init__(self, pid):
        self.top = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.top] + self.top.children(recursive=True)
            except psutil.Error:
                procs = []
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.05)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def mib(b):
    return round(b / 2**20)


def pct(xs, p):
    """The p-th percentile of xs, interpolated; None for no values."""
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def machine(**extra):
    """The machine a benchmark ran on, with `extra` (server and client versions)."""
    import os
    import platform
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version(), **extra,
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}

"""What the benches measure with, in one place: percentiles, CPU seconds of processes and of the machine (Linux
/proc), and emptying a bench's own broker database."""
from __future__ import annotations

import math
import os


def pct(values, q: float) -> float:
    """The q-quantile by linear interpolation between order statistics (NaN for no values)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def proc_cpu_seconds(pid: int, *, children: bool = False) -> float:
    """CPU seconds of one process (utime + stime), with `children` also those of its children that have exited
    (cutime + cstime: a PostgreSQL backend that came and went with its connection stays in the count); 0 when it is
    gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat's first line: busy is user,
    nice, system, irq, softirq and steal; idle and iowait are not; guest time is already inside user and nice)."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq + steal
    return busy / tick, (busy + idle + iowait) / tick


def purge_broker(url: str) -> None:
    """Delete the tasks a run sent (the queues of the bench's own broker database, with their priority suffixes) and
    kombu's bookkeeping there; best effort."""
    try:
        import redis

        client = redis.Redis.from_url(url)
        names = [k for pattern in ("default*", "ai*", "unacked*", "_kombu.*")
                 for k in client.scan_iter(match=pattern, count=1000)]
        if names:
            client.delete(*names)
    except Exception as exc:  # noqa: BLE001 - best effort
        print(f"(could not empty the broker's queues at {url}: {exc})")


def close_django_connections() -> None:
    """Close this process's database connections before the bench drops its database (a no-op where Django was never
    set up)."""
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # noqa: BLE001 - Django may not be set up
        pass

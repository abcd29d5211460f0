"""Facts about the machine a benchmark ran on, and how busy it was."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from inference.pool import usable_cores
from training.versions import package_versions

# Libraries whose versions decide the figures.
_PACKAGES = ("numpy", "pillow", "scipy", "scikit-learn", "onnxruntime", "onnx", "tensorflow", "keras",
             "gradio", "fastapi", "uvicorn", "flask", "matplotlib", "psutil")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()




def memory_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except (OSError, ValueError):
        pass
    return None


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: above the core count means others were using the CPU."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


class CpuMeter:
    """How much of the machine's CPU other processes used while a block of ours ran.

    All busy CPU time on the machine (/proc/stat) minus this process's and its reaped
    children's (our servers are stopped and reaped before a section ends), over the
    wall time times the core count: 0 on a quiet machine, 0.5 when others took half of it.
    """

    def __enter__(self) -> "CpuMeter":
        self._start = (time.perf_counter(), _machine_busy_seconds(), _own_cpu_seconds())
        self.other_share = None
        return self

    def __exit__(self, *exc_info) -> None:
        wall0, busy0, own0 = self._start
        busy1 = _machine_busy_seconds()
        wall, own = time.perf_counter() - wall0, _own_cpu_seconds() - own0
        if wall > 0 and busy0 is not None and busy1 is not None:
            share = (busy1 - busy0 - own) / (wall * usable_cores())
            self.other_share = round(min(1.0, max(0.0, share)), 3)


def _machine_busy_seconds() -> float | None:
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # Guest time (fields 8, 9) is already counted in user/nice.
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def library_versions() -> dict[str, str]:
    return package_versions(_PACKAGES)


def describe() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "memory_gib": memory_total_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "load_average_at_start": load_average(),
    }


def group_pids(pgid: int) -> list[int]:
    """Every process in a process group: a server and any children it spawned (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Field 5 of /proc/<pid>/stat is the process group; the command name (field 2) may hold spaces.
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid:
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
    return pids


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (utime, stime: /proc/<pid>/stat fields 14, 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss(pid: int) -> int:
    """Resident memory (bytes) of one process."""
    return _vmrss(Path(f"/proc/{pid}/status"))


def process_group_rss(pgid: int) -> int:
    """Resident memory (bytes) summed over a process group. Shared libraries count once per process."""
    total = 0
    for pid in group_pids(pgid):
        try:
            total += process_rss(pid)
        except (OSError, ValueError, IndexError):
            continue
    return total


def process_group_pss(pgid: int) -> int | None:
    """Proportional memory (bytes) summed over a process group: each shared page split between the
    processes that map it, so it adds up to what the group really uses. None where Linux does not say."""
    total = 0
    for pid in group_pids(pgid):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except FileNotFoundError:
            continue
        except (OSError, ValueError, IndexError):
            return None
    return total or None


def _vmrss(status_path: Path) -> int:
    for line in status_path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

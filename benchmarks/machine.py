"""Facts about the machine a benchmark ran on, and how busy it was."""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

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


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


def busy_reason() -> str:
    """A sentence for a missed timing target when other work shared the CPU, else ""."""
    load = load_average()
    cores = usable_cores()
    if load and load[0] > 0.5 * cores:
        return (f" Other work shared the CPU: the 1-minute load average was {load[0]:.1f} on {cores} cores "
                f"(before this run's own load), so this figure is pessimistic.")
    return ""


def library_versions() -> dict[str, str]:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


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


def process_group_rss(pgid: int) -> int:
    """Resident memory (bytes) of every process in a process group: a server and any children it spawned."""
    try:
        import psutil
    except ImportError:
        psutil = None
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Field 5 of /proc/<pid>/stat is the process group; the command name (field 2) may hold spaces.
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
            if psutil is not None:
                total += psutil.Process(int(entry.name)).memory_info().rss
            else:
                total += _vmrss(entry / "status")
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
        except Exception as error:  # psutil.NoSuchProcess and friends
            if psutil is not None and isinstance(error, psutil.Error):
                continue
            raise
    return total


def _vmrss(status_path: Path) -> int:
    for line in status_path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

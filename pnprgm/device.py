"""Device selection: explicit, with a CPU fallback that says so."""
from __future__ import annotations

import os
import warnings

import torch

from pnprgm.errors import UserError


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; an unavailable CUDA or MPS request falls back to CPU with a
    warning; a CUDA index this machine lacks, or a device kind pnprgm does not run on, is a one-line error."""
    if isinstance(name, torch.device):
        return name
    text = "cpu" if name is None else str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text) if text else None
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto.")
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn("CUDA is not available here; running on the CPU instead", stacklevel=2)
        return torch.device("cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {text} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s) "
                        f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        warnings.warn("MPS is not available here; running on the CPU instead", stacklevel=2)
        return torch.device("cpu")
    return device


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this machine's first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


#: Precisions of a training forward pass: ``bf16`` (autocast; weights, losses and validation stay float32), ``float32``,
#: or ``auto`` (bf16 where the hardware computes it: :func:`native_bf16`).
PRECISIONS = ("auto", "bf16", "float32")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (elsewhere bf16 autocast is emulated, slower than float32): CUDA
    GPUs from Ampere on (compute capability 8.0), CPUs with the AVX512-BF16 or AMX-BF16 instructions."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    # /proc/cpuinfo, not oneDNN's own test (torch.ops.mkldnn._is_mkldnn_bf16_supported): that one says yes for any
    # AVX-512 CPU, where bf16 is emulated
    return device.type == "cpu" and bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_precision(asked: str, device: torch.device) -> str:
    """``bf16`` or ``float32``: ``asked`` (:data:`PRECISIONS`) with ``auto`` resolved for ``device``."""
    if asked not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}; got {asked!r}.")
    if asked == "auto":
        return "bf16" if native_bf16(device) else "float32"
    return asked


def physical_cores() -> int:
    """Physical CPU cores available to this process (distinct core ids in /proc/cpuinfo among the allowed CPUs;
    else the allowed CPU count)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        cores, processor, physical = set(), None, "0"
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "processor":
                    processor = int(value)
                elif key == "physical id":
                    physical = value
                elif key == "core id" and processor in allowed:
                    cores.add((physical, value))
        if cores:
            return min(len(cores), len(allowed))
    except (OSError, ValueError):
        pass
    return max(1, len(allowed))


def default_threads() -> int:
    """Torch threads that do not oversubscribe the CPU: ``OMP_NUM_THREADS`` when set, else the physical cores not
    already busy (1-minute load average), at least 1. On a busy 2-core machine torch's default of 2 threads ran a
    restore 10x slower than 1 (34.7 s vs 3.7 s): its threads wait on each other."""
    told = os.environ.get("OMP_NUM_THREADS", "").strip()
    if told.isdigit() and int(told) >= 1:
        return int(told)
    cores = physical_cores()
    try:
        busy = round(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, min(cores, cores - busy))


def set_threads(threads: int | None) -> int:
    """Set torch's CPU threads (None: :func:`default_threads`); returns the number set."""
    count = default_threads() if threads is None else int(threads)
    if count < 1:
        raise UserError(f"threads must be at least 1; got {threads}.")
    torch.set_num_threads(count)
    return count


def available_bytes(device: str) -> int | None:
    """Free memory of ``device`` (CUDA: free device memory; CPU: MemAvailable, else physical memory), or None."""
    try:
        if device.startswith("cuda"):
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, RuntimeError, AttributeError):
        return None

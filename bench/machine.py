"""What a benchmark ran on, for its JSON: timings mean little without the CPU beside them."""

from __future__ import annotations

import os
import platform

# The flags that change which kernels run: bf16 units, AMX, AVX-512, AVX2.
FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
# Environment settings that cap the instruction sets PyTorch, oneDNN and MKL use (how an
# AVX2-only CPU is approximated on a newer one), and SpanQA's own bf16 switch.
CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
        "SPANQA_CPU_BF16")


def describe() -> dict:
    """CPU model, core count, which of FLAGS it has, and any instruction-set caps set."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in FLAGS if f in flags],
            "caps": {k: os.environ[k] for k in CAPS if k in os.environ}}


def label(machine: dict) -> str:
    """One line for a table's caption: "Intel Xeon, 2 cores, avx512_bf16 amx_bf16 ..."."""
    caps = ", ".join(f"{k}={v}" for k, v in machine["caps"].items())
    text = f"{machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['flags'])}"
    return text + (f", capped: {caps}" if caps else "")

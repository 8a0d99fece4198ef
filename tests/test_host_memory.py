"""scraplab.host_memory: the allocator setting takes effect where asked, and only there."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from scraplab.host_memory import MODES, set_host_memory

# Runs in a fresh interpreter (the setting is process-wide): allocates a 32 MiB block with glibc's malloc and
# reports by how much glibc's mmap'ed bytes (mallinfo2's hblkhd) grow meanwhile, before and after the mode.
PROBE = textwrap.dedent("""
    import ctypes, sys
    from scraplab.host_memory import host_memory_mode, set_host_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallInfo2

    def mmapped_while_held(n=32 << 20):  # growth of glibc's mmap'ed bytes while the block is held
        base = libc.mallinfo2().hblkhd
        p = libc.malloc(n)
        held = libc.mallinfo2().hblkhd - base
        libc.free(p)
        return held

    before = mmapped_while_held()
    took = set_host_memory(sys.argv[1])
    print(before, mmapped_while_held(), took, host_memory_mode())
""")


def _probe(mode: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return out.stdout.split()


glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2")


@glibc
def test_keep_serves_large_blocks_from_the_heap_instead_of_mmap():
    before, after, took, mode = _probe("keep")
    assert int(before) >= 32 << 20  # glibc's default: a 32 MiB block is mmap'ed (and unmapped again on free)
    assert int(after) == 0 and took == "True" and mode == "keep"


@glibc
def test_default_leaves_the_allocator_alone():
    before, after, took, mode = _probe("default")
    assert int(before) >= 32 << 20 and int(after) >= 32 << 20
    assert took == "False" and mode == "default"


def test_unknown_mode_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"host_memory must be one of \('keep', 'default'\), got 'always'"):
        set_host_memory("always")
    assert MODES == ("keep", "default")


def test_the_train_command_applies_its_configured_mode(tmp_path, monkeypatch):
    from scraplab.cli import train as train_cli
    from train_helpers import tiny_cfg

    seen = []
    monkeypatch.setattr(train_cli, "set_host_memory", lambda mode: seen.append(mode) or False)
    train_cli.train(tiny_cfg("granular", "mss", tmp_path, ["host_memory=keep", "trainer.max_steps=1"]))
    assert seen == ["keep"]

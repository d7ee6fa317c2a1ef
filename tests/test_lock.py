"""The results-folder lock: one live writer, and a dead one never blocks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metabench.errors import MetabenchError
from metabench.lock import LOCK_NAME, hold

TRY_LOCK = "import sys; from pathlib import Path; from metabench.lock import hold\n" \
           "with hold(Path(sys.argv[1])): print('locked')"


def _try_in_another_process(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(folder)], capture_output=True, text=True, env=env)


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    with hold(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        r = _try_in_another_process(tmp_path)
        assert r.returncode != 0 and f"in use by another metabench run (PID {os.getpid()})" in r.stderr
        with pytest.raises(MetabenchError, match=f"PID {os.getpid()}"):  # a second holder in one process, too
            with hold(tmp_path):
                pass
    assert not (tmp_path / LOCK_NAME).exists()  # a clean exit removes the file
    assert _try_in_another_process(tmp_path).stdout.strip() == "locked"


def test_a_lock_file_left_by_a_killed_run_does_not_block(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (tmp_path / LOCK_NAME).write_text(f"{holder.pid}\n")  # as a killed holder leaves it: no flock on it
    holder.kill()
    holder.wait()
    with hold(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_a_folder_that_cannot_be_written_is_one_line():
    with pytest.raises(MetabenchError, match="cannot write to /proc: .*give a writable --out folder"):
        with hold(Path("/proc")):  # exists, but no file can be made in it (as on a read-only file system)
            pass

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import evoreg


@pytest.fixture(scope="session", autouse=True)
def isolated_registry_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The CLI's registry index goes to a folder of this session (this process and the
    subprocesses it starts), never to the user's cache."""
    folder = tmp_path_factory.mktemp("evoreg-cache")
    before = os.environ.get("EVOREG_CACHE_DIR")
    os.environ["EVOREG_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        del os.environ["EVOREG_CACHE_DIR"]
    else:
        os.environ["EVOREG_CACHE_DIR"] = before


@pytest.fixture(scope="session", autouse=True)
def isolated_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The checkpoint signing key of the tests' user lives in a folder of this session,
    never in the real user's config directory."""
    folder = tmp_path_factory.mktemp("evoreg-config")
    before = os.environ.get("EVOREG_CONFIG_DIR")
    os.environ["EVOREG_CONFIG_DIR"] = str(folder)
    yield folder
    if before is None:
        del os.environ["EVOREG_CONFIG_DIR"]
    else:
        os.environ["EVOREG_CONFIG_DIR"] = before


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """One torch thread for the modules that set ``ONE_TORCH_THREAD = True``: their small
    batches stall in OpenMP barriers with two threads on a shared 2-core machine. Module
    scope and autouse, so the module's own module-scoped fixtures (a trained model) run
    under it too."""
    if not getattr(request.module, "ONE_TORCH_THREAD", False):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_benchmark() -> Callable[..., subprocess.CompletedProcess]:
    """Run a benchmark command from the repository root; assert that it exits 0 and leaves
    docs/benchmarks.md as it was (smoke runs pass --no-doc). Returns the finished process."""
    root = Path(__file__).resolve().parent.parent
    doc = root / "docs" / "benchmarks.md"

    def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
        before = doc.read_text() if doc.exists() else None
        done = subprocess.run(command, cwd=root, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, done.stderr[-3000:]
        assert (doc.read_text() if doc.exists() else None) == before
        return done

    return run


@pytest.fixture
def real_space() -> evoreg.Real:
    return evoreg.Real(5)


def _log_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def kill_mid_run() -> Callable[[list[str], Path, int, float], None]:
    """Start ``command``, SIGKILL it once ``log`` has ``lines`` lines (or after ``timeout``
    seconds), and fail if it had finished before the kill."""

    def kill(command: list[str], log: Path, lines: int, timeout: float) -> None:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + timeout
        while _log_lines(log) < lines and time.time() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    return kill

"""Stage runs forked from a warm interpreter: `python -m stages.<step> MODEL` as dvc.yaml runs it,
without paying PyTorch's import each time.

A stage of a PyTorch model spends about 2.3 CPU-seconds importing PyTorch, and the tests run such
stages dozens of times (hostile checkpoints, doubled weights, mutated modules). `run` forks each
run from a server process that imported the libraries the stages load (numpy, onnx, ONNX Runtime;
PyTorch for the PyTorch family) once, and nothing of the project. The forked child takes the
run's folder, environment (replaced whole), arguments and sys.path, so the project's own code,
edited or not, is imported fresh; it writes its output to files, holds the address-space limit
it is given, and runs the module as `python -m` does (runpy, `__main__`). Its parent in the
server waits for it with wait4 and reports its exit status and peak resident memory.

What a library reads when it loads (thread counts, CPU kernels, the hash seed) is fixed in the
server: every distinct set of those variables gets a server of its own, started with exactly
them, and past MAX_SERVERS a run is a new process as before.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Environment variables the preloaded libraries (or the interpreter) read when they load.
LOAD_TIME = re.compile(
    r"^(OMP_|MKL_|OPENBLAS_|GOTO|KMP_|ONEDNN_|DNNL_|ATEN_|TORCH|PYTORCH_|ORT_|OPENCV_|LD_|MALLOC_|"
    r"PYTHON(?!PATH$|DONTWRITEBYTECODE$))"
)
BASE_PRELOAD = ("numpy", "onnx", "onnxruntime")
TORCH_PRELOAD = (*BASE_PRELOAD, "torch")
MAX_SERVERS = 4  # per test process: each holds its libraries in memory (about 0.4 GB with PyTorch)
START_SECONDS = 120

_SERVER = r"""
import json, os, resource, runpy, signal, socket, sys, time, traceback
address, preload = sys.argv[1], sys.argv[2:]
for module in preload:
    __import__(module)
own_path = {p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
base_path = [p for p in sys.path[1:] if p not in own_path]
listener = socket.socket(socket.AF_UNIX)
listener.bind(address)
listener.listen(16)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the waiters


def run(request):
    os.setpgid(0, 0)
    os.chdir(request["cwd"])
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    if request["address_space"]:
        limit = request["address_space"]
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    python_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *python_path, *base_path]
    sys.argv = [request["module"], *request["args"]]
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def serve(connection):
    request = json.loads(connection.makefile().readline())
    pid = os.fork()
    if pid == 0:
        connection.close()
        run(request)
    deadline, timed_out = time.monotonic() + request["timeout"], False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            done, status, usage = os.wait4(pid, 0)
            timed_out = True
            break
        time.sleep(0.01)
    reply = {"code": os.waitstatus_to_exitcode(status), "peak": usage.ru_maxrss * 1024, "timed_out": timed_out}
    connection.sendall(json.dumps(reply).encode())


parent = os.getppid()
listener.settimeout(2.0)
while True:
    try:
        connection, _ = listener.accept()
    except TimeoutError:
        if os.getppid() != parent:  # the test process is gone (killed: its atexit never ran)
            os.unlink(address)
            os.rmdir(os.path.dirname(address))
            sys.exit(0)
        continue
    if os.fork():
        connection.close()
        continue
    listener.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        serve(connection)
    finally:
        os._exit(0)
"""


@dataclass(frozen=True)
class Result:
    """A finished run: exit code (negative: killed by that signal), output, peak resident bytes."""

    code: int
    stdout: str
    stderr: str
    peak: int
    timed_out: bool


class _Server:
    def __init__(self, env: dict[str, str], preload: tuple[str, ...]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="warm-stages-"))
        self.address = str(self.folder / "socket")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVER, self.address, *preload],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,
        )
        deadline = time.monotonic() + START_SECONDS
        while not os.path.exists(self.address):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the warm stage server did not start (exit {self.process.poll()})")
            time.sleep(0.05)

    def run(self, request: dict) -> dict:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(self.address)
            connection.sendall((json.dumps(request) + "\n").encode())
            connection.shutdown(socket.SHUT_WR)
            reply = b"".join(iter(lambda: connection.recv(65536), b""))
        if not reply:
            raise RuntimeError("the warm stage server gave no reply")
        return json.loads(reply)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, 9)
        except ProcessLookupError:
            pass
        self.process.wait()
        for path in self.folder.iterdir():
            path.unlink()
        self.folder.rmdir()


_servers: dict[tuple, _Server] = {}  # this test process's servers, by their load-time environment
_starting = threading.Lock()  # the hostile tests run stages from several threads


@atexit.register
def _stop_servers() -> None:
    while _servers:
        _servers.popitem()[1].stop()


def preload_for(project: Path, model: str) -> tuple[str, ...]:
    """The libraries a stage of `model` loads anyway (PyTorch only for the PyTorch family: a
    warm import would count in the address space and memory of runs that never load it)."""
    from stages.core.params import model_spec

    try:
        family = model_spec(model, project / "params.yaml").family
    except Exception:  # a params file a test broke on purpose: the stage itself says what is wrong
        return BASE_PRELOAD
    return TORCH_PRELOAD if family == "torch_sigver" else BASE_PRELOAD


def run(
    cwd: Path,
    module: str,
    args: list[str],
    env: dict[str, str],
    preload: tuple[str, ...] = BASE_PRELOAD,
    address_space: int = 0,
    timeout: float = 600,
) -> Result | None:
    """`python -m module *args` in `cwd` with exactly `env`, forked from the warm server of this
    load-time environment; None where there are already MAX_SERVERS (the caller starts a process)."""
    key = (preload, tuple(sorted((k, v) for k, v in env.items() if LOAD_TIME.match(k))))
    with _starting:
        if key not in _servers:
            if len(_servers) >= MAX_SERVERS:
                return None
            _servers[key] = _Server(env, preload)
    with tempfile.TemporaryDirectory() as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        request = {
            "module": module,
            "args": [str(a) for a in args],
            "cwd": str(cwd),
            "env": env,
            "stdout": str(out),
            "stderr": str(err),
            "address_space": address_space,
            "timeout": timeout,
        }
        reply = _servers[key].run(request)
        return Result(reply["code"], out.read_text(), err.read_text(), reply["peak"], reply["timed_out"])

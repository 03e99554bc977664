"""A throwaway JupyterLab server for the browser tests: its own folders, a token, a free port, and a sure end.

``LabServer.start`` copies the tutorials and the sample data into a temporary
folder (the notebooks write their stores under ``<folder>/runs``, never into
the repository), points every Jupyter config, data, runtime and settings folder
there too, and starts ``python -m jupyterlab`` on 127.0.0.1. Kernels inherit
``DLABEL_FAST=1``, the tutorials' fast switch. ``stop`` shuts the server down
through its REST API and then kills whatever of it and its kernels is left:
kernels run in their own sessions, so they are found through ``psutil``.

Example:
    >>> server = LabServer.start(tmp_path)  # doctest: +SKIP
    >>> server.sessions()  # doctest: +SKIP
    []
    >>> server.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90  # a cold JupyterLab on a busy 2-core machine
KERNEL_TIMEOUT_S = 120

# User settings the tests rely on: every cell stays in the DOM (no virtual scrolling), no news or update
# checks (no network), no autosave of the temporary copies.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_tutorials(root: Path) -> Path:
    """Copy ``notebooks/*.ipynb`` and ``data/`` into ``root``; return ``root/notebooks``."""
    notebooks = root / "notebooks"
    notebooks.mkdir(parents=True)
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        shutil.copy2(nb, notebooks / nb.name)
    shutil.copytree(REPO / "data", root / "data")
    return notebooks


def _jupyter_env(root: Path) -> dict[str, str]:
    home = root / "jupyter"
    env = dict(os.environ)
    env.update({
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
        "MPLCONFIGDIR": str(home / "matplotlib"),
        "DLABEL_FAST": "1",  # the tutorials' test switch (see notebooks/conftest.py)
        "PYTORCH_LIGHTNING_DISABLE_TIPS": "1",
        "PYTHONHASHSEED": env.get("PYTHONHASHSEED", "0"),
    })
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_PATH", None)
    for name, values in LAB_SETTINGS.items():
        path = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return env


@dataclass
class LabServer:
    """A running JupyterLab: ``url``, ``token``, the folder it serves (``root``) and its process."""

    root: Path
    port: int
    token: str
    process: subprocess.Popen
    log_path: Path
    kernels_seen: dict[int, psutil.Process] = field(default_factory=dict)  # the server's children

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, root: Path) -> LabServer:
        """Copy the tutorials into ``root`` and start JupyterLab on them; wait until it answers."""
        copy_tutorials(root)
        env = _jupyter_env(root)
        port, token = free_port(), secrets.token_hex(16)
        log_path = root / "jupyterlab.log"
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=", "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False",
            "--ServerApp.shutdown_no_activity_timeout=900",  # a last resort should the test process die
        ]
        if os.name == "posix" and os.geteuid() == 0:  # containers and CI runners often run as root
            cmd.append("--allow-root")
        with log_path.open("wb") as log:
            process = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        server = cls(root=root, port=port, token=token, process=process, log_path=log_path)
        try:
            server._wait_until_up()
        except BaseException:
            server.stop()
            raise
        return server

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the server's log (for failure messages)."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                self.api("GET", "/api/status")
                return
            time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer on {self.url} within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def api(self, method: str, path: str, body: dict | None = None) -> object:
        """Call the server's REST API with the token; the decoded JSON answer (``None`` when empty)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def lab_url(self, notebook: str, workspace: str) -> str:
        """The address that opens ``notebook`` (relative to ``root``) alone in a fresh workspace."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={self.token}"

    def sessions(self) -> list[dict]:
        return list(self.api("GET", "/api/sessions") or [])

    def session_for(self, notebook: str) -> dict | None:
        return next((s for s in self.sessions() if s.get("path") == notebook), None)

    def wait_for_idle_kernel(self, notebook: str, timeout: float = KERNEL_TIMEOUT_S) -> dict:
        """Wait until ``notebook`` has a session whose kernel is idle; return the session."""
        deadline = time.monotonic() + timeout
        state = "no session"
        while time.monotonic() < deadline:
            session = self.session_for(notebook)
            if session is not None:
                state = session["kernel"].get("execution_state", "?")
                if state == "idle":
                    self._remember_kernels()
                    return session
            time.sleep(0.5)
        raise TimeoutError(f"the kernel of {notebook} is not idle after {timeout} s ({state}):\n{self.log_tail()}")

    def shut_down_kernel(self, notebook: str) -> None:
        """End ``notebook``'s session and wait until its kernel process has exited (its store is let go)."""
        self._remember_kernels()
        session = self.session_for(notebook)
        if session is None:
            return
        self.api("DELETE", f"/api/sessions/{session['id']}")
        deadline = time.monotonic() + KERNEL_TIMEOUT_S
        while time.monotonic() < deadline:  # one kernel process per session left, none for this notebook
            self.kernels_seen = {pid: p for pid, p in self.kernels_seen.items() if _alive(p)}
            if len(self.kernels_seen) <= len(self.sessions()):
                return
            time.sleep(0.2)
        raise TimeoutError(f"the kernel of {notebook} did not exit within {KERNEL_TIMEOUT_S} s:\n{self.log_tail()}")

    def _remember_kernels(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self.kernels_seen.setdefault(child.pid, child)

    def stop(self) -> None:
        """Shut the server and its kernels down; kill what is left after a few seconds."""
        self._remember_kernels()
        if self.process.poll() is None:
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.api("POST", "/api/shutdown")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        for process in self.kernels_seen.values():
            with contextlib.suppress(psutil.Error):
                process.kill()  # psutil refuses a pid that now belongs to another process


def _alive(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return False

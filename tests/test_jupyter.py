"""The notebooks open in JupyterLab, as the README says: the server of the venv starts on 127.0.0.1,
serves the reproduce notebook through its contents API, and stops."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JUPYTER = Path(sys.executable).parent / "jupyter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_jupyter_lab_serves_the_reproduce_notebook(tmp_path: Path):
    assert JUPYTER.is_file(), f"{JUPYTER} missing: JupyterLab is not installed in the venv (requirements.txt)"
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "HOME": str(tmp_path)}
    server = subprocess.Popen(
        [str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={REPO}", "--ServerApp.port_retries=0", "--allow-root"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status, _ = get(f"{base}/api/status?token={token}")
                break
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                time.sleep(0.5)
        assert status == 200, f"the server did not answer (exit {server.poll()})"
        status, body = get(f"{base}/api/contents/notebooks/reproduce.ipynb?token={token}")
        assert status == 200, body[:300]
        notebook = json.loads(body)
        assert notebook["type"] == "notebook" and notebook["name"] == "reproduce.ipynb"
        on_disk = json.loads((REPO / "notebooks" / "reproduce.ipynb").read_text())
        assert [c["cell_type"] for c in notebook["content"]["cells"]] == [c["cell_type"] for c in on_disk["cells"]]
        assert get(f"{base}/api/contents/notebooks/reproduce.ipynb")[0] == 403  # no token, no notebook
        status, page = get(f"{base}/lab?token={token}")
        assert status == 200 and b"JupyterLab" in page
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert server.returncode is not None

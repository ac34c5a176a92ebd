"""Driving JupyterLab in headless Chromium for the browser tests (helpers only, no tests).

:class:`Lab` starts ``jupyter lab`` on 127.0.0.1 with a token and a free port, with the
project's JupyterLab settings (``notebooks/lab_settings.json``) as overrides and every other
JupyterLab/Jupyter directory in a temporary folder. :class:`Browser` is a selenium Chrome on the
system Chromium and chromedriver (nothing is downloaded: the driver path is given and Selenium
Manager is kept offline), with every host name but 127.0.0.1 unresolvable, and the browser and
performance logs on, so a test can assert that no request left the machine and that the console
holds no error.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
APT_HINT = "sudo apt-get install -y chromium chromium-driver"
LOCAL_HOSTS = {"127.0.0.1"}
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "devtools", "file", "chrome-extension"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.25):
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < end:
        try:
            value = condition()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - a page still loading raises all sorts of things
            last_error = err
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


class Lab:
    """``jupyter lab`` serving ``root`` on 127.0.0.1; ``url(path)`` opens a file in it."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root, self.port, self.token = Path(root), free_port(), secrets.token_hex(16)
        settings = scratch / "app-settings"
        (settings / "overrides.d").mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "notebooks" / "lab_settings.json", settings / "overrides.d" / "workbench.json")
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(scratch / "config"), "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(scratch / "user-settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "workspaces"), "OMP_NUM_THREADS": "2"}
        args = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root}", f"--LabApp.app_settings_dir={settings}",
                f"--LabApp.user_settings_dir={scratch / 'user-settings'}",
                f"--LabApp.workspaces_dir={scratch / 'workspaces'}", "--LabApp.news_url=",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.getuid() == 0:
            args.append("--allow-root")
        self.log = open(scratch / "jupyter-lab.log", "w")
        self.process = subprocess.Popen(args, cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._up, 90, "JupyterLab to answer on 127.0.0.1")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {self.process.returncode}; see {self.log.name}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status?token={self.token}", timeout=2) as r:
            return r.status == 200

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{path}?token={self.token}&reset"

    def shutdown_kernels(self) -> None:
        base = f"http://127.0.0.1:{self.port}/api/kernels"
        with urllib.request.urlopen(f"{base}?token={self.token}", timeout=5) as r:
            kernels = json.load(r)
        for kernel in kernels:
            req = urllib.request.Request(f"{base}/{kernel['id']}?token={self.token}", method="DELETE")
            urllib.request.urlopen(req, timeout=10).close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Browser:
    """Headless Chromium through selenium; ``shot(name)`` saves a numbered screenshot."""

    def __init__(self, shots: Path, width: int = 1400, height: int = 1000) -> None:
        os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver
        from selenium import webdriver  # optional dev dependency: imported only when a browser test runs
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    f"--window-size={width},{height}", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                    "--disable-background-networking", "--disable-component-update", "--no-first-run",
                    "--disable-sync", "--metrics-recording-only", "--disable-default-apps"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(60)
        self.shots, self.count = Path(shots), 0
        self.shots.mkdir(parents=True, exist_ok=True)
        self.console: list[dict] = []
        self.requests: list[str] = []

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.shots / f"{self.count:02d}_{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def collect_logs(self) -> None:
        """Move the browser console and the network requests seen so far into ``console`` and ``requests``."""
        self.console += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])

    def outside_requests(self) -> list[str]:
        """Requests to anything but 127.0.0.1 (data:, blob: and file: URLs stay on the machine)."""
        out = []
        for url in self.requests:
            parsed = urlparse(url)
            if parsed.scheme in LOCAL_SCHEMES:
                continue
            if parsed.hostname not in LOCAL_HOSTS:
                out.append(url)
        return out

    def console_errors(self, ignore: tuple[str, ...] = ()) -> list[str]:
        return [e["message"] for e in self.console if e.get("level") == "SEVERE"
                and not any(text in e["message"] for text in ignore)]

    def quit(self) -> None:
        self.driver.quit()

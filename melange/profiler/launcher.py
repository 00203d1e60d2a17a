"""`--serve "vllm serve …"`: start the server, wait until /health answers, stop it on exit.

The server runs in its own process group (so Ctrl-C reaches us, not it, and we stop it in
order): on leaving the `with` block — normally, on an error, on Ctrl-C or SIGTERM — it gets
SIGTERM, then SIGKILL if it has not exited within `grace_s`.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request

from melange.core import MelangeError


class ServerProcess:
    """A server command as a context manager; `url` is where its /health is polled."""

    def __init__(self, command: str, url: str, *, ready_timeout_s: float = 1800.0, grace_s: float = 30.0) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise MelangeError("--serve: empty command")
        self.url, self.ready_timeout_s, self.grace_s = url.rstrip("/"), ready_timeout_s, grace_s
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        try:
            self.proc = subprocess.Popen(self.argv, start_new_session=True)
        except OSError as exc:
            raise MelangeError(f"--serve: cannot start {self.argv[0]!r}: {exc.strerror or exc}") from None
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Poll /health until 200; fail if the process exits or the timeout passes."""
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MelangeError(f"--serve: the server exited with code {self.proc.returncode} "
                                   "before /health answered")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise MelangeError(f"--serve: {self.url}/health did not answer within {self.ready_timeout_s:g} s")

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it after the grace period."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

    def __exit__(self, *exc) -> None:
        self.stop()

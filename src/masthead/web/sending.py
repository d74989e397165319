"""Sends started from the editor's app: ``masthead send DIR --issue SLUG --yes`` as a child
process, so a crash of either side leaves the outbox consistent (the send engine resumes
where it stopped), and the figures the page polls come from the outbox itself."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..deliver import send_state, set_paused
from ..store import Store


@dataclass
class Run:
    process: subprocess.Popen[str]
    output: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    reader: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Until the process has ended and its whole report has been read."""
        alive = self.reader is not None and self.reader.is_alive()
        return self.process.poll() is None or alive


class Sends:
    """The send processes this server started, one per issue at most."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def start(self, slug: str) -> bool:
        """Start (or resume) sending ``slug``; False when a send of it is already running."""
        with self._lock:
            run = self._runs.get(slug)
            if run is not None and run.running:
                return False
            command = [
                sys.executable,
                "-c",
                "from masthead.cli import main; main()",
                "send",
                str(self.root),
                "--issue",
                slug,
                "--yes",
                "--quiet",
            ]
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            run = Run(process)
            run.reader = threading.Thread(target=self._collect, args=(run,), daemon=True)
            self._runs[slug] = run
            run.reader.start()
        return True

    @staticmethod
    def _collect(run: Run) -> None:
        assert run.process.stdout is not None
        with run.process.stdout:
            for line in run.process.stdout:
                run.output.append(line.rstrip())
        run.process.wait()

    def pause(self, store: Store, slug: str) -> bool:
        """Ask the running sender to stop claiming messages (it finishes those in flight)."""
        return set_paused(store, slug, True)

    def status(self, store: Store, slug: str) -> dict[str, Any]:
        """The figures the send page polls."""
        state = send_state(store, slug)
        run = self._runs.get(slug)
        return {
            "exists": state.exists,
            "running": bool(run and run.running),
            "exit_code": None if run is None or run.running else run.process.returncode,
            "paused": state.paused,
            "total": state.total,
            "sent": state.count("sent"),
            "failed": state.failed,
            "bounced": state.bounced,
            "unknown": state.count("unknown"),
            "suppressed": state.count("suppressed"),
            "waiting": state.remaining,
            "complete": state.complete,
            "output": list(run.output) if run else [],
        }

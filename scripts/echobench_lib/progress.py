"""`cell i/n <label>, ETA m:ss` on one terminal line while a run goes (silent when stderr is
not a terminal), and the lines that must stay on screen."""
import sys
import time


class Progress:
    def __init__(self, total, per_run_estimate, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total, self.estimate = total, per_run_estimate
        self.done, self.t0 = 0, time.monotonic()

    def start(self, label):
        if not self.tty:
            return
        per_run = (time.monotonic() - self.t0) / self.done if self.done else self.estimate
        eta = int(per_run * max(0, self.total - self.done))
        self.stream.write(f"\r\033[Kcell {self.done + 1}/{self.total} {label}, "
                          f"ETA {eta // 60}:{eta % 60:02d}")
        self.stream.flush()

    def step(self):
        self.done += 1

    def note(self, text):
        """A line that must stay on screen (a failed cell), above the progress line."""
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self):
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()

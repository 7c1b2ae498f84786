"""Shared helpers for the benchmark scripts: the machine, timing, BENCHMARKS.md sections."""
import json, os, platform, re, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def release_binary():
    """Builds the release binary (incremental) and returns its path."""
    subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    return os.path.join(out, "tiktok-forwarder")


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) // 1024 // 1024
    except OSError:
        pass
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.splitlines()
    return f"{os.cpu_count()} cores, {cpu}, {mem} GiB, {platform.system()} {platform.release()}, {swift[0] if swift else 'swift ?'}"


def update_section(name, body):
    """Replaces (or appends) the section between <!-- bench:NAME --> markers in BENCHMARKS.md."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\nEvery number here was produced by the script named beside it; rerun it to check.\n"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    open(path, "w").write(text)


class Sandbox:
    """`tiktok-forwarder sandbox` on a free loopback port, as a context manager."""

    def __init__(self, binary, *args, token="bench"):
        self.argv = [binary, "sandbox", "--port", "0", "--access-token", token, *args]
        self.token = token

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"sandbox did not start: {line!r}")
        self.url = "http://" + line.split()[-1]
        return self

    def stats(self):
        import urllib.request
        with urllib.request.urlopen(self.url + "/_sandbox/stats") as r:
            return json.load(r)

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)

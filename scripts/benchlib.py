"""Shared helpers for the benchmark scripts: the machine, timing, BENCHMARKS.md sections."""
import ctypes, ctypes.util, json, os, platform, re, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# BENCH_DYNAMIC=1: measure the toolchain-linked release build instead of the shipped one.
DYNAMIC = os.environ.get("BENCH_DYNAMIC") == "1"


def release_binary():
    """Builds the binary the Debian package ships (release, Swift's standard library and
    Foundation linked in statically, in .build-static as scripts/package-deb builds it;
    incremental) and returns its path. BENCH_DYNAMIC=1 measures the toolchain-linked release
    build instead (what scripts/install.sh installs from source): the same code, with ~5-6 MB
    more resident (the shared Swift and Foundation libraries' pages) and ~5 % more CPU per
    event in a drain (measured 2026-12-02, 3 interleaved runs each)."""
    if DYNAMIC:
        flags = ["-c", "release"]
    else:
        # Its own build folder: static and ordinary link flags mixed in one folder break each other.
        flags = ["-c", "release", "--static-swift-stdlib", "--scratch-path", os.path.join(ROOT, ".build-static")]
    subprocess.run(["swift", "build", *flags, "--product", "tiktok-forwarder"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["swift", "build", *flags, "--show-bin-path"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    return os.path.join(out, "tiktok-forwarder")


def free_port():
    """A loopback TCP port free right now."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lock_seconds(port):
    """The daemon's tiktok_forwarder_store_write_lock_seconds_total, or None."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("tiktok_forwarder_store_write_lock_seconds_total "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def steal_ticks():
    """All cores' steal time so far (/proc/stat: time the hypervisor ran something else
    while this VM had work), in clock ticks."""
    return int(open("/proc/stat").readline().split()[8])


def build_kind():
    """How release_binary() was built, for the tables."""
    return "toolchain-linked release build" if DYNAMIC else \
        "release build as the Debian package ships it (static Swift runtime)"


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


class Producer:
    """One libsqlite3 connection (through ctypes) inserting one row per autocommit transaction
    with `synchronous = FULL`, its busy handler counted: SQLite's stock one (`poll=False`:
    sleeps of 1, 2, 5, 10 … 100 ms, what `sqlite3_busy_timeout` and Python's `timeout=` use),
    or one that retries every 0.25 ms (`poll=True`, as the daemon's own connection does)."""

    STOCK_DELAYS_MS = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100]
    _lib = None

    @classmethod
    def lib(cls):
        if cls._lib is None:
            lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
            lib.sqlite3_open_v2.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_char_p]
            lib.sqlite3_exec.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            lib.sqlite3_prepare_v2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
            lib.sqlite3_bind_text.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
            lib.sqlite3_step.argtypes = lib.sqlite3_reset.argtypes = lib.sqlite3_finalize.argtypes = [ctypes.c_void_p]
            lib.sqlite3_close_v2.argtypes = [ctypes.c_void_p]
            cls.BUSY_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
            lib.sqlite3_busy_handler.argtypes = [ctypes.c_void_p, cls.BUSY_HANDLER, ctypes.c_void_p]
            cls._lib = lib
        return cls._lib

    def __init__(self, path, payload, poll=False):
        lib = self.lib()
        self.db = ctypes.c_void_p()
        assert lib.sqlite3_open_v2(path.encode(), ctypes.byref(self.db), 2, None) == 0  # SQLITE_OPEN_READWRITE
        self.calls, self.slept = 0, 0.0

        def busy(_, count):
            if poll:
                delay, give_up = 0.00025, count >= 40_000  # 10 s
            else:
                delay, give_up = self.STOCK_DELAYS_MS[min(count, len(self.STOCK_DELAYS_MS) - 1)] / 1000, count >= 300
            if give_up:
                return 0
            start = time.perf_counter()
            time.sleep(delay)
            self.calls += 1
            self.slept += time.perf_counter() - start
            return 1

        self.handler = self.BUSY_HANDLER(busy)  # kept alive: SQLite holds the pointer
        lib.sqlite3_busy_handler(self.db, self.handler, None)
        assert lib.sqlite3_exec(self.db, b"PRAGMA synchronous = FULL", None, None, None) == 0
        self.stmt = ctypes.c_void_p()
        assert lib.sqlite3_prepare_v2(self.db, b"INSERT INTO outbox (event_id, payload) VALUES (?1, ?2)", -1, ctypes.byref(self.stmt), None) == 0
        self.payload = payload.encode()

    def insert(self, event_id):
        """(milliseconds in all, busy-handler calls, milliseconds slept in it)"""
        lib = self.lib()
        self.calls, self.slept = 0, 0.0
        start = time.perf_counter()
        transient = ctypes.c_void_p(-1)  # SQLITE_TRANSIENT: SQLite copies the bytes
        lib.sqlite3_bind_text(self.stmt, 1, event_id.encode(), -1, transient)
        lib.sqlite3_bind_text(self.stmt, 2, self.payload, -1, transient)
        rc = lib.sqlite3_step(self.stmt)
        lib.sqlite3_reset(self.stmt)
        elapsed = time.perf_counter() - start
        if rc != 101:  # SQLITE_DONE
            raise RuntimeError(f"INSERT failed: SQLite code {rc}")
        return elapsed * 1000, self.calls, self.slept * 1000

    def close(self):
        lib = self.lib()
        lib.sqlite3_finalize(self.stmt)
        lib.sqlite3_close_v2(self.db)


class Postgres:
    """A throw-away PostgreSQL server (scripts/pg-cluster) as a context manager; `.uri(db)`
    names a database on it, `.create(db)` makes one."""

    def __enter__(self):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="tiktok-forwarder-pg.")
        os.chmod(self.dir, 0o755)
        self.server = subprocess.run([os.path.join(ROOT, "scripts", "pg-cluster"), "start", self.dir], check=True,
                                     capture_output=True, text=True).stdout.strip()
        self.port = int(self.server.rsplit(":", 1)[1].split("/")[0])
        return self

    def uri(self, database="postgres"):
        return self.server.rsplit("/", 1)[0] + "/" + database

    def create(self, database):
        subprocess.run(["psql", "-X", "-q", "-d", self.server, "-c", f"CREATE DATABASE {database}"], check=True)
        return self.uri(database)

    def __exit__(self, *exc):
        import shutil
        subprocess.run([os.path.join(ROOT, "scripts", "pg-cluster"), "stop", self.dir], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def psycopg():
    """psycopg 3, from Debian's python3-psycopg (scripts/setup.sh) even when another python3 runs
    this script (its pure-Python implementation works with any 3.x)."""
    import sys
    try:
        import psycopg as module
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        import psycopg as module
    return module

"""Every script stopped by a real signal in the middle of its work (systemd
stopping a unit, `timeout`, an operator's kill, a closed terminal): one line,
the documented status, and every output it wrote whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from helper import wait_for
from PIL import Image

import reports
import run
from make_delivery import make_delivery

ROOT = Path(__file__).resolve().parent.parent
SMTP_GREETING = b"220 slow.example.com ESMTP\r\n"
PHOTOS = 60
STOP_SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]
HTTP_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100


def start(script: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CATALOG_", "SMTP_"))}
    return subprocess.Popen(
        [sys.executable, str(ROOT / script), *args],
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(
    process: subprocess.Popen, sig: signal.Signals, *, worker: bool = False
) -> tuple[int, str, str]:
    """Send sig to the process, or with worker=True to one of its threads other than the
    main one; then its status and output."""
    if worker:
        wait_for(lambda: signalled_a_worker_thread(process, sig))
    else:
        process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def signalled_a_worker_thread(process: subprocess.Popen, sig: signal.Signals) -> bool:
    """Sends sig to the process through a thread that is not its main one. The kernel
    then runs the handler's C part on that thread and does not wake the main thread,
    as happens to a stop that lands just before the main thread starts to wait."""
    threads = sorted(t.id for t in psutil.Process(process.pid).threads() if t.id != process.pid)
    for thread in threads:
        try:
            os.kill(thread, sig)
            return True
        except ProcessLookupError:  # that thread has just ended
            continue
    return False


def assert_one_line(text: str, expected: str) -> None:
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text, text
    assert lines and lines[-1] == expected, text


def connected(process: subprocess.Popen, port: int) -> Callable[[], bool]:
    """A condition for wait_for: the process holds a connection to port on loopback (it
    is talking to the server), or it has ended (the assertions then say how)."""

    def talking() -> bool:
        try:
            connections = psutil.Process(process.pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            return True
        return any(c.raddr and c.raddr.port == port for c in connections)

    return talking


def whole_jpegs(folder: Path) -> list[Path]:
    """Every JPEG in folder, each opened and decoded in full (a cut one fails)."""
    jpegs = sorted(folder.glob("*.jpeg"))
    for jpeg in jpegs:
        with Image.open(jpeg) as image:
            image.load()
    return jpegs


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 noisy 2000x1500 TIFFs (one made, hard-linked under 59 more names: the
    script only reads them): seconds of work for changeImage.py --jobs 1, so a
    signal finds it in the middle."""
    folder = tmp_path_factory.mktemp("photos") / "images"
    folder.mkdir()
    Image.effect_noise((2000, 1500), 64).convert("RGB").save(folder / "001.tiff")
    for number in range(2, PHOTOS + 1):
        os.link(folder / "001.tiff", folder / f"{number:03d}.tiff")
    return folder


def copy_of(photos: Path, tmp_path: Path, count: int = PHOTOS) -> Path:
    """The first `count` photos in a delivery of the test's own, hard-linked: the script
    only reads them, and a copy would write 540 MB for each test."""
    images = tmp_path / "supplier-data" / "images"
    images.mkdir(parents=True)
    for photo in sorted(photos.iterdir())[:count]:
        os.link(photo, images / photo.name)
    return images


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=[sig.name for sig in STOP_SIGNALS])
def test_change_image_stops_with_130_and_only_whole_jpegs(photos, tmp_path: Path, sig) -> None:
    images = copy_of(photos, tmp_path)
    process = start("changeImage.py", "--jobs", "1", str(images))
    wait_for(lambda: any(images.glob("*.jpeg")))
    status, _, err = stop(process, sig)
    assert status == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert 1 <= len(whole_jpegs(images)) < PHOTOS
    assert not [p for p in images.iterdir() if p.name.startswith(".")] or all(
        p.name == ".fruit-catalog.lock" for p in images.iterdir() if p.name.startswith(".")
    )


def test_change_image_acts_on_a_stop_that_lands_on_a_worker_thread(photos, tmp_path: Path):
    """The threads convert the largest images first while the main thread awaits them
    in file order: 001.tiff, the smallest, is converted last. A stop the kernel gives
    to a worker thread must not wait for it (result_of wakes the main thread)."""
    images = copy_of(photos, tmp_path)
    (images / "001.tiff").unlink()
    Image.effect_noise((200, 150), 64).convert("RGB").save(images / "001.tiff")
    process = start("changeImage.py", "--jobs", "1", str(images))
    wait_for(lambda: any(images.glob("*.jpeg")))
    status, _, err = stop(process, signal.SIGTERM, worker=True)
    assert status == 130, err
    assert err.startswith("ERROR interrupted: converted ") and "Traceback" not in err, err
    assert not (images / "001.jpeg").exists(), "the run went on to its last image"


# Who receives the stop: the process (the kernel gives it to the main thread), or a
# worker thread (the main thread, waiting for all the POSTs, must still act on it).
WHOM = {"process": False, "worker": True}


@pytest.mark.parametrize("whom", WHOM)
def test_run_py_stopped_writes_its_record(tmp_path: Path, store_factory, catalog, whom) -> None:
    # 3 s a POST: the 12 products, posted in order, outlast the stop. A run that posted
    # them all before acting on its stop was the main thread asleep on the POSTs' future
    # while the stop landed elsewhere (result_of); the "worker" case makes that happen.
    store = store_factory(slow_every=1, slow=3.0)
    delivery = catalog(tmp_path, [f"{n:03d}" for n in range(1, 13)])
    uploaded = start(
        "supplier_image_upload.py", "--url", store.url, "--images", str(delivery / "images")
    )
    assert uploaded.wait(timeout=120) == 0, uploaded.stderr.read()
    args = ["--url", store.url, "--descriptions", str(delivery / "descriptions"), "--jobs", "2"]
    process = start("run.py", *args, "--images", str(delivery / "images"))
    wait_for(lambda: len(store.catalog.fruits()) >= 1)
    status, _, err = stop(process, signal.SIGTERM, worker=WHOM[whom])
    assert status == 130, err
    assert_one_line(err, "ERROR interrupted by SIGTERM")
    record = json.loads((delivery / "imported.json").read_text(encoding="utf-8"))
    assert record["complete"] is False
    assert record["summary"].startswith("interrupted: ")
    imported = {p["name"] for p in record["products"] if p["outcome"] == "imported"}
    in_store = {f["name"] for f in store.catalog.fruits()}
    assert imported == in_store, "the record must say exactly what the store took"
    unsent = [p for p in record["products"] if p["outcome"] == "failed"]
    assert unsent and all("interrupted" in p["reason"] for p in unsent)
    journal = (delivery / "imported.jsonl").read_text(encoding="utf-8").splitlines()
    assert all(json.loads(line) for line in journal)


def test_the_uploader_stopped_leaves_a_whole_journal(tmp_path: Path, store_factory, catalog):
    store = store_factory(slow_every=1, slow=1.0)
    delivery = catalog(tmp_path, [f"{n:03d}" for n in range(1, 13)])
    journal = delivery / "uploaded.jsonl"
    args = ["--url", store.url, "--images", str(delivery / "images"), "--jobs", "2"]
    process = start("supplier_image_upload.py", *args)
    wait_for(lambda: store.post_count >= 1)
    status, _, err = stop(process, signal.SIGTERM)
    assert status == 130, err
    assert "interrupted" in err.splitlines()[-1] and "Traceback" not in err
    assert store.post_count < 12, "the stop must leave pictures unsent"
    assert all(json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines())


def test_two_stops_at_once_are_one_line(tmp_path: Path, store_factory, catalog) -> None:
    """SIGHUP and SIGTERM, both pending when the main thread wakes (both sent to a worker
    thread): the first stops the run, the second is ignored without a word."""
    store = store_factory(slow_every=1, slow=3.0)
    delivery = catalog(tmp_path, [f"{n:03d}" for n in range(1, 13)])
    args = ["--url", store.url, "--images", str(delivery / "images"), "--jobs", "2"]
    process = start("supplier_image_upload.py", *args)
    wait_for(lambda: store.post_count >= 1)
    wait_for(lambda: signalled_a_worker_thread(process, signal.SIGHUP))
    status, _, err = stop(process, signal.SIGTERM, worker=True)
    assert status == 130, err
    assert_one_line(err, "ERROR interrupted by SIGHUP")


def test_report_email_stopped_mid_send(tmp_path: Path, trickling_server, write_record, product):
    port = trickling_server(SMTP_GREETING, interval=5.0)
    record = write_record(tmp_path / "imported.json", [product("001.txt", "Apple", 500)])
    pdf = tmp_path / "processed.pdf"
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_TIMEOUT": "60"}
    process = start("report_email.py", "--record", str(record), "--pdf", str(pdf), env=env)
    wait_for(connected(process, port))
    status, _, err = stop(process, signal.SIGTERM)
    assert status == 130, err
    assert_one_line(err, "ERROR interrupted by SIGTERM")
    assert pdf.read_bytes().rstrip().endswith(b"%%EOF")


def test_emails_py_stopped_mid_send(trickling_server) -> None:
    port = trickling_server(SMTP_GREETING, interval=5.0)
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_TIMEOUT": "60"}
    process = start("emails.py", "you@example.com", env=env)
    wait_for(connected(process, port))
    status, _, err = stop(process, signal.SIGTERM)
    assert status == 130, err
    assert_one_line(err, "ERROR interrupted by SIGTERM")


@pytest.mark.parametrize("whom", WHOM)
def test_health_check_stopped_mid_probe_is_one_unknown_line(
    tmp_path: Path, trickling_server, whom
) -> None:
    # The probe may take 200 s: a main thread asleep on it while the stop landed on the
    # probe's thread would outlast stop()'s 60 s. The other checks' threads end first
    # (the CPU sample in 1 s): then the main thread waits for the probe's.
    port = trickling_server(HTTP_ANSWER, interval=5.0)
    state = tmp_path / "state.json"
    args = ["--url", f"http://127.0.0.1:{port}/", "--url-timeout", "200", "-t", "240"]
    process = start("health_check.py", *args, "--state", str(state), "--no-email", "--nagios")
    wait_for(connected(process, port))
    wait_for(lambda: len(psutil.Process(process.pid).threads()) <= 2)
    status, out, err = stop(process, signal.SIGTERM, worker=WHOM[whom])
    assert status == 3, err
    assert out == "HEALTH UNKNOWN - interrupted by SIGTERM\n"
    assert "Traceback" not in err
    assert not state.exists() or json.loads(state.read_text(encoding="utf-8"))


def test_run_py_stopped_while_a_killed_runs_post_may_land_records_it_uncertain(
    tmp_path: Path, catalog
) -> None:
    """A killed run left 001's POST without an answer; the next run, stopped while it
    gives that POST --grace to land, records 001 as maybe sent, not as never sent."""
    delivery = catalog(tmp_path, ["001", "002"])
    url, sent = "http://127.0.0.1:9/", run.now()  # the store is asked only after the wait
    killed = [
        {"event": "run", "run": "killed", "time": sent, "store": url, "script": "run.py"},
        {"event": "product", "run": "killed", "time": sent, "file": "001.txt", "since_id": 0}
        | {"outcome": "sending"},
    ]
    (delivery / "imported.jsonl").write_text("".join(json.dumps(e) + "\n" for e in killed))
    args = ["--url", url, "--grace", "120", "--descriptions", str(delivery / "descriptions")]
    process = start("run.py", *args, "--images", str(delivery / "images"))
    while "(--grace)" not in (line := process.stderr.readline()) and line:
        pass
    status, _, err = stop(process, signal.SIGTERM)
    assert status == 130, err
    record = json.loads((delivery / "imported.json").read_text(encoding="utf-8"))
    outcomes = {p["file"]: (p["outcome"], p["problem"]) for p in record["products"]}
    assert outcomes == {
        "001.txt": ("uncertain", "unconfirmed"),
        "002.txt": ("failed", "interrupted"),
    }


def test_reports_py_stopped_while_writing(tmp_path: Path, monkeypatch, caplog) -> None:
    """reports.py writes its sample too fast to catch from outside: the signal is
    sent to this process from inside the writing, and the guard must turn it into
    130 and one line."""

    def interrupted_writing(*args: object, **kwargs: object) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM did not stop the writing")

    monkeypatch.setattr(reports, "generate_supplier_report", interrupted_writing)
    assert reports.main([str(tmp_path / "sample.pdf")]) == 130
    assert caplog.messages[-1] == "interrupted by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_hangup_ignored_by_nohup_stays_ignored(photos, tmp_path: Path) -> None:
    images = copy_of(photos, tmp_path, count=12)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "changeImage.py"), "--jobs", "1", str(images)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    wait_for(lambda: any(images.glob("*.jpeg")))
    status, _, err = stop(process, signal.SIGHUP)
    assert status == 0, err
    assert len(whole_jpegs(images)) == 12


def test_a_stop_inside_signals_held_waits_for_the_block(monkeypatch, caplog) -> None:
    """A record being written is finished first; the stop still ends the run, and a
    second signal meanwhile is ignored."""
    steps = []

    def work() -> int:
        with run.signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            steps.append("record written")
        steps.append("went on")
        return 0

    assert run.guarded(work) == 130
    assert steps == ["record written"]
    assert caplog.messages[-1] == "interrupted by SIGTERM"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize(
    "script, args, env",
    [
        ("run.py", ["--help"], {"CATALOG_JOBS": "0"}),
        ("changeImage.py", ["--version"], {"IMAGE_SIZE": "big"}),
        ("run.py", ["--jobs", "2", "--dry-run"], {"CATALOG_JOBS": "0"}),  # --check needs images
    ],
)
def test_the_flag_wins_over_a_bad_variable(tmp_path: Path, script, args, env) -> None:
    make_delivery(tmp_path, count=1, size=(60, 40))
    done = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        env={**os.environ, "SUPPLIER_DATA": str(tmp_path / "supplier-data"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "environment variable" not in done.stderr


# -- stops before the guard: however early, one line and the documented status ---------

# A module each script imports late, mid-way through its libraries (python -X importtime
# names each on stderr as it is done).
LATE_IMPORT = {
    "changeImage.py": "PIL.Image",
    "supplier_image_upload.py": "urllib3.connection",
    "run.py": "urllib3.connection",
    "report_email.py": "reportlab.lib.colors",
    "reports.py": "reportlab.lib.colors",
    "emails.py": "smtplib",
    "health_check.py": "psutil",
}
# The moments a stop comes: once the first import after the prologue is done (argparse,
# the first in every script), while it imports its libraries, and some milliseconds
# after that first import (still importing, or working, or waiting on a server).
MOMENTS = ["first import", "mid-import", "20 ms", "60 ms", "150 ms"]
# reports.py writes its sample in a moment and has nothing to wait on: it is stopped
# only at the moments an event marks.
QUICK = {"reports.py"}


def stop_said(script: str, sig: signal.Signals) -> tuple[str, int, str]:
    """(stream, status, line): what a script says when stopped by sig."""
    said = "interrupted" if sig == signal.SIGINT else f"interrupted by {sig.name}"
    if script == "health_check.py":
        return "stdout", 3, f"HEALTH UNKNOWN - {said}"
    return "stderr", 130, f"ERROR {said}"


def with_default_signals(ignored: tuple = ()) -> None:
    """In the child before exec: stop signals as a shell leaves them (pytest and
    Python may have set SIGINT to be ignored), and `ignored` as nohup leaves them."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)


class Started:
    """A script started with `python -X importtime`, its output collected by threads."""

    def __init__(self, script: str, args: list[str], env: dict, ignored: tuple = ()) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("CATALOG_", "SMTP_"))}
        self.process = subprocess.Popen(
            [sys.executable, "-X", "importtime", str(ROOT / script), *args],
            env={**clean, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: with_default_signals(ignored),
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.readers = [
            threading.Thread(target=self.collect, args=(name, getattr(self.process, name)))
            for name in self.lines
        ]
        for reader in self.readers:
            reader.start()

    def collect(self, name: str, stream) -> None:
        for line in stream:
            self.lines[name].append(line.rstrip("\n"))

    def imported(self, module: str) -> bool:
        done = [line.rsplit("|", 1)[-1].strip() for line in list(self.lines["stderr"])]
        return module in done or self.process.poll() is not None

    def said(self) -> dict[str, list[str]]:
        """What it printed but the import times, once it has ended."""
        self.process.wait(timeout=60)
        for reader in self.readers:
            reader.join(timeout=60)
        return {
            name: [line for line in lines if line.strip() and not line.startswith("import time:")]
            for name, lines in self.lines.items()
        }


@pytest.fixture
def waiting_run(tmp_path: Path, trickling_server, write_record, product, catalog, photos):
    """waiting_run(script): the arguments and environment with which the script, once
    it has imported its libraries, works or waits for seconds (a server that trickles
    its answer, 60 photos to convert)."""

    def arguments(script: str) -> tuple[list[str], dict]:
        smtp = {"SMTP_HOST": "127.0.0.1", "SMTP_TIMEOUT": "60"}
        if script in ("emails.py", "report_email.py"):
            smtp["SMTP_PORT"] = str(trickling_server(SMTP_GREETING, interval=5.0))
        if script == "changeImage.py":
            return ["--jobs", "1", str(copy_of(photos, tmp_path, count=12))], {}
        if script in ("supplier_image_upload.py", "run.py"):
            url = f"http://127.0.0.1:{trickling_server(HTTP_ANSWER, interval=5.0)}/"
            delivery = catalog(tmp_path / "delivery", ["001"])
            if script == "run.py":
                return ["--url", url, "--descriptions", str(delivery / "descriptions"),
                        "--images", str(delivery / "images")], {}  # fmt: skip
            return ["--url", url, "--images", str(delivery / "images")], {}
        if script == "report_email.py":
            record = write_record(tmp_path / "imported.json", [product("001.txt", "Apple", 500)])
            return ["--record", str(record), "--pdf", str(tmp_path / "processed.pdf")], smtp
        if script == "emails.py":
            return ["you@example.com"], smtp
        if script == "health_check.py":
            url = f"http://127.0.0.1:{trickling_server(HTTP_ANSWER, interval=5.0)}/"
            state = str(tmp_path / "state.json")
            return ["--url", url, "--url-timeout", "50", "-t", "60", "--state", state,
                    "--no-email", "--nagios"], {}  # fmt: skip
        return [str(tmp_path / "sample.pdf")], {}

    return arguments


SCRIPT_NAMES = list(LATE_IMPORT)
EARLY_CASES = [
    pytest.param(script, moment, STOP_SIGNALS[(number + index) % 3], id=f"{script}-{moment}")
    for number, script in enumerate(SCRIPT_NAMES)
    for index, moment in enumerate(MOMENTS)
    if not (script in QUICK and moment.endswith(" ms"))
]


@pytest.mark.parametrize("script, moment, sig", EARLY_CASES)
def test_an_early_stop_is_one_line_and_the_status(waiting_run, script, moment, sig) -> None:
    args, env = waiting_run(script)
    started = Started(script, args, env)
    wait_for(lambda: started.imported("argparse"))
    if moment == "mid-import":
        wait_for(lambda: started.imported(LATE_IMPORT[script]))
    elif moment.endswith(" ms"):
        time.sleep(int(moment.split()[0]) / 1000)  # a moment to stop at, not a wait for it
    assert started.process.poll() is None, started.said()
    started.process.send_signal(sig)
    said = started.said()
    stream, status, line = stop_said(script, sig)
    everything = said["stdout"] + said["stderr"]
    assert not any("Traceback" in text for text in everything), everything
    assert started.process.returncode == status, everything
    # On a busy machine any moment may come later than meant, once the script is at
    # work: it may then say what it finished (changeImage.py does), in the one line.
    prefix = line.split(" by ")[0]
    stops = [text for text in everything if text.startswith(prefix)]
    assert len(stops) == 1 and said[stream][-1] == stops[0], everything
    assert stops[0] == line or stops[0].startswith(f"{prefix}: "), everything


def test_a_hangup_ignored_at_start_stays_ignored_before_the_guard(waiting_run) -> None:
    args, env = waiting_run("run.py")
    started = Started("run.py", args, env, ignored=(signal.SIGHUP,))
    wait_for(lambda: started.imported("argparse"))
    started.process.send_signal(signal.SIGHUP)
    wait_for(lambda: started.imported(LATE_IMPORT["run.py"]))
    started.process.send_signal(signal.SIGTERM)
    said = started.said()
    assert started.process.returncode == 130, said
    assert said["stderr"][-1] == "ERROR interrupted by SIGTERM"


def test_one_stop_state_for_a_script_and_its_helpers() -> None:
    """report_email.py and reports.py take their guard from emails.py; health_check.py,
    which can run without emails.py, carries its own copy of the block: in one process
    they share one stop state all the same."""
    import emails
    import health_check
    import report_email

    assert report_email.guarded is emails.guarded is reports.guarded
    assert health_check.guarded is not emails.guarded
    assert emails.STOPPING is health_check.STOPPING
    assert emails.HELD is health_check.HELD
    assert emails.Interrupted is health_check.Interrupted


def test_a_stop_while_emails_code_waits_is_seen_by_the_same_state(trickling_server) -> None:
    """A SIGTERM that comes while emails.py's code waits on a server, handled by the guard
    of another copy of the block (health_check.py's): the stop state emails.py's code reads is
    set, and the interruption is the one every copy knows."""
    import emails

    port = trickling_server(SMTP_GREETING, interval=5.0)
    environ = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_TIMEOUT": "60"}
    message = emails.generate_email("a@example.com", "b@example.com", "Subject", "Body")
    seen = []

    def work() -> int:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        try:
            emails.send_email(message, environ)
        except emails.Interrupted:
            seen.append(emails.STOPPING.is_set())
            raise
        return 0

    import health_check

    assert health_check.guarded(work, say=seen.append) == 130
    assert seen == [True, "interrupted by SIGTERM"]


# -- a stop while Python shuts down, after the script's run is over ----------------------

SHUT_DOWN_WITH_A_STOP = """
import atexit, os, runpy, signal, sys, time
# Runs while the interpreter shuts down, after main() returned its status.
atexit.register(lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.2)))
sys.argv = [sys.argv[1], "--help"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize(
    "script",
    [
        *("changeImage.py", "supplier_image_upload.py", "run.py", "report_email.py"),
        *("health_check.py", "reports.py", "emails.py"),
    ],
)
def test_a_stop_after_the_run_is_over_leaves_its_status_and_says_nothing(script):
    """The work is done and its status decided: a SIGTERM while Python joins threads and
    runs atexit is ignored, never -15 (killed) nor "interrupted" after the summary."""
    done = subprocess.run(
        [sys.executable, "-c", SHUT_DOWN_WITH_A_STOP, str(ROOT / script)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "usage:" in done.stdout

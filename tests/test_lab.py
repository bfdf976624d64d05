"""make lab: the lab in a box. Its servers on loopback, env.sh pointing the lab's
scripts into it, the store's catalog page and the web inbox in a real browser
(Playwright driving Debian's Chromium), and nothing written outside LAB_DIR."""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helper import wait_for
from labbox import FREE_PORTS, LAB, ROOT, SMALL, LabBox
from pypdf import PdfReader

from lab import Box, crontab_template

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SUBJECT = "Upload Completed - Online Fruit Store"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabBox]:
    """A box where a right lab ran its four steps (tests/lab_impls/lab_impl.py)."""
    with LabBox(tmp_path_factory.mktemp("box") / "lab") as started:
        started.learners_steps()
        yield started


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], b""


def inbox_url(box: LabBox) -> str:
    ports = json.loads((box.root / "lab.json").read_text())
    return f"http://127.0.0.1:{ports['inbox']}/"


def test_env_sh_points_the_lab_scripts_into_the_box(box):
    shown = subprocess.run(
        ["/bin/sh", "-c", f'. "{box.root}/env.sh"; echo "$HOME|$SUPPLIER_DATA|$REPORT_PDF"'],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.strip()
    assert shown == f"{box.home}|{box.home}/supplier-data|{box.root}/tmp/processed.pdf"
    variables = box.variables
    assert get(variables["CATALOG_URL"] + "fruits/")[0] == 200
    with socket.create_connection((variables["SMTP_HOST"], int(variables["SMTP_PORT"])), 5):
        pass
    assert 'smtplib.SMTP(os.environ.get("SMTP_HOST"' in (box.root / "env.sh").read_text()


def test_every_server_of_the_box_listens_on_loopback_only(box):
    lab = psutil.Process(box.process.pid)
    listening = [
        connection.laddr
        for process in [lab, *lab.children(recursive=True)]
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    ]
    ports = json.loads((box.root / "lab.json").read_text())
    assert sorted(address.port for address in listening) == sorted(ports.values())
    assert {address.ip for address in listening} == {"127.0.0.1"}


def test_the_inbox_serves_each_message_and_its_attachment_as_sent(box):
    inbox = inbox_url(box)
    status, kind, page = get(inbox)
    assert (status, kind) == (200, "text/html; charset=utf-8")
    assert SUBJECT in page.decode()
    count = len(list((box.root / "mail").glob("*.eml")))
    assert f"{count} message{'s' * (count != 1)} in" in page.decode()
    name = next((box.root / "mail").glob("*.eml")).name
    status, _, page = get(f"{inbox}m/{name}")
    assert "All fruits are uploaded to our website successfully." in page.decode()
    status, kind, pdf = get(f"{inbox}m/{name}/0/processed.pdf")
    assert (status, kind, pdf[:5]) == (200, "application/pdf", b"%PDF-")
    for outside in ("m/..%2Fenv.sh", f"m/{name}/1/x", "m/nothing.eml", "env.sh"):
        assert get(inbox + outside)[0] == 404, outside


# -- in a real browser ------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does, as root)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: pip install -r requirements-dev.txt"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def viewer_shown(page, seconds: float = 20) -> None:
    """Chromium's PDF viewer frame (an extension's page) attaches after the load event."""
    deadline = time.monotonic() + seconds
    while not any(frame.url.startswith("chrome-extension://") for frame in page.frames):
        assert time.monotonic() < deadline, f"no PDF viewer within {seconds} s: {page.frames}"
        page.wait_for_timeout(100)


def test_the_catalog_page_shows_every_product_with_its_picture_loaded(box, page):
    page.goto(box.variables["CATALOG_URL"])
    names = page.locator(".fruit h2").all_inner_texts()
    assert names == ["Apple", "Avocado", "Banana"]
    pictures = page.eval_on_selector_all(
        ".fruit img", "images => images.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert pictures == [[True, 600, 400]] * 3


def test_the_inbox_shows_the_report_mail_and_its_pdf_opens(box, page):
    page.goto(inbox_url(box))
    page.get_by_role("link", name=SUBJECT).click()
    assert page.locator("td.from").inner_text() == "automation@example.com"
    assert page.locator("td.to").inner_text().endswith("@example.com")
    assert page.locator("td.subject").inner_text() == SUBJECT
    assert "A detailed list is attached to this email." in page.locator("pre.body").inner_text()
    link = page.locator(".attachments a")
    assert link.inner_text() == "processed.pdf"
    url = inbox_url(box).rstrip("/") + link.get_attribute("href")
    opened = page.goto(url)
    assert (opened.status, opened.headers["content-type"]) == (200, "application/pdf")
    # Chromium opens it in its own PDF viewer (an extension frame), not as a download.
    assert page.evaluate("document.contentType") == "application/pdf"
    viewer_shown(page)
    pdf = page.request.get(url).body()
    assert "Processed Update on" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


# -- starting, resuming, and what it leaves alone -----------------------------


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
    }


def test_make_lab_resumes_its_folder_and_writes_nothing_outside_it(tmp_path):
    lab = tmp_path / "lab"
    with LabBox(lab) as first:
        request = urllib.request.Request(
            first.variables["CATALOG_URL"] + "fruits/",
            data=json.dumps({"name": "Kept", "weight": 1, "description": "d"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=30).close()
    ports, delivery = (lab / "lab.json").read_text(), snapshot(lab / "home")
    first.schedule("true")
    status, steps, _ = first.check()
    assert status == 1
    assert steps[1] == (
        "FAIL",
        "images/001.jpeg is missing: each images/001.tiff needs its JPEG beside it",
    )
    # Read from the store's files while the box is stopped: no HTTP call is claimed.
    assert steps[2] == (
        "FAIL",
        "the store holds no 001.jpeg: upload it (POST /upload/ with the file as 'file')",
    )
    assert steps[3] == (
        "FAIL",
        "Apple (001.txt) is not in the store (it holds no product named 'Apple')",
    )
    assert steps[5][1].startswith("nothing listens on SMTP port")
    assert steps[5][1].endswith("start the box (make lab), then check")

    # A learner's home and crontab: make lab must leave both as they are.
    home, bin_dir, temporary = tmp_path / "home", tmp_path / "bin", tmp_path / "tmp"
    for folder in (home / ".config", bin_dir, temporary):
        folder.mkdir(parents=True)
    (home / ".config" / "keep").write_text("mine\n")
    (home / "supplier-data").mkdir()
    crontab_calls = tmp_path / "crontab-calls"
    (bin_dir / "crontab").write_text(f'#!/bin/sh\necho "$@" >> "{crontab_calls}"\n')
    (bin_dir / "crontab").chmod(0o755)
    before = snapshot(home)
    env = {
        **os.environ,
        "HOME": str(home),
        "TMPDIR": str(temporary),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    # -o: the venv is installed already; the test must not run pip.
    make = ["make", "-s", "-C", str(ROOT), "-o", ".venv/.installed", "lab", f"LAB_DIR={lab}"]
    with LabBox(lab, make, env) as resumed:
        fruits = json.loads(get(resumed.variables["CATALOG_URL"] + "fruits/")[2])
        assert [fruit["name"] for fruit in fruits] == ["Kept"]
    assert (lab / "lab.json").read_text() == ports
    assert snapshot(lab / "home") == delivery
    assert snapshot(home) == before
    assert not crontab_calls.exists()
    assert list(temporary.iterdir()) == []

    with LabBox(lab, [sys.executable, str(LAB), "--dir", str(lab), "--fresh", *SMALL]) as fresh:
        assert json.loads(get(fresh.variables["CATALOG_URL"] + "fruits/")[2]) == []


def test_a_port_in_use_is_a_clear_error_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                str(LAB),
                "--dir",
                str(tmp_path / "lab"),
                *FREE_PORTS,
                "--smtp-port",
                str(port),
                *SMALL,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.startswith(f"lab: port {port} on 127.0.0.1 (the smtp) is in use")
    assert "make lab LAB_SMTP_PORT=..." in done.stderr
    assert "Traceback" not in done.stderr


def test_a_folder_the_lab_did_not_make_is_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    done = subprocess.run(
        [sys.executable, str(LAB), "--dir", str(tmp_path), "--fresh", *FREE_PORTS, *SMALL],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "was not made by the lab; not touching it" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_the_box_runs_its_every_minute_lines_as_cron_does_and_stops_them(tmp_path):
    lab = tmp_path / "lab"
    # One "minute" a second, so the test waits seconds, not minutes.
    argv = [sys.executable, str(LAB), "--dir", str(lab), *FREE_PORTS, *SMALL, "--cron-period", "1"]
    with LabBox(lab, argv) as box:
        (lab / "crontab").write_text(
            "GREETING=hello\n"
            '* * * * * echo "$GREETING $HOME $SMTP_PORT" >> ran.txt\n'
            "*/5 * * * * echo no >> every-five.txt\n"
            "* * * * * echo $$ > sleeper.pid; exec sleep 120\n"
        )
        ran = box.home / "ran.txt"
        wait_for(lambda: ran.is_file() and len(ran.read_text().splitlines()) >= 2, seconds=30)
        # Each minute's lines run side by side: the sleeper's may write its pid later.
        pid_file = box.home / "sleeper.pid"
        wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), seconds=30)
        sleeper = int(pid_file.read_text())
        smtp_port = box.variables["SMTP_PORT"]
    assert ran.read_text().splitlines()[0] == f"hello {box.home} {smtp_port}"
    assert not (box.home / "every-five.txt").exists()
    assert not psutil.pid_exists(sleeper) or psutil.Process(sleeper).status() == "zombie"
    # Still running a "minute" later, so started once.
    assert (lab / "cron.log").read_text().count("exec sleep 120") == 1


def test_a_second_box_on_the_same_folder_stops_and_touches_nothing(tmp_path):
    lab = tmp_path / "lab"
    argv = [sys.executable, str(LAB), "--dir", str(lab), *FREE_PORTS, *SMALL]
    with LabBox(lab, argv) as first:
        before = snapshot(lab)
        for extra in ([], ["--fresh"]):
            second = subprocess.run(
                [*argv, *extra], capture_output=True, text=True, timeout=60, check=False
            )
            assert (second.returncode, second.stdout) == (2, "")
            assert second.stderr == (
                f"lab: a lab box already runs on {lab} (pid {first.process.pid}): its addresses"
                f" are in {lab}/env.sh; stop it with Ctrl-C there, or use another LAB_DIR\n"
            )
            assert snapshot(lab) == before
        assert get(first.variables["CATALOG_URL"] + "fruits/")[0] == 200
        # Killed outright, the box holds nothing: the kernel drops its lock.
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait()
    with LabBox(lab, argv) as again:
        assert (lab / "lab.lock").read_text() == f"{again.process.pid}\n"


def test_a_cron_job_that_ended_is_reaped_before_the_next_minute(tmp_path):
    lab = tmp_path / "lab"
    # A "minute" of 10 s: an unreaped job would stay a zombie for seconds, not a moment.
    period = 10
    argv = [sys.executable, str(LAB), "--dir", str(lab), *FREE_PORTS, *SMALL, "--cron-period"]
    with LabBox(lab, [*argv, str(period)]) as box:
        (lab / "crontab").write_text("* * * * * echo $$ > job.pid\n")
        job = box.home / "job.pid"
        wait_for(lambda: job.is_file() and job.read_text().strip(), seconds=30)
        pid = int(job.read_text())
        # Gone before the next "minute" (the box's minutes fall on multiples of the period),
        # however late a busy machine started the job or let this test see it. The log's
        # second may read one early (the tick is a float a hair under the whole second).
        started = (lab / "cron.log").read_text().splitlines()[-1][:19]
        logged = time.mktime(time.strptime(started, "%Y-%m-%d %H:%M:%S"))
        tick = (logged + 1) // period * period
        wait_for(lambda: not psutil.pid_exists(pid), seconds=tick + period - time.time())


def test_the_crontab_template_shows_a_line_that_runs_our_health_check():
    box_root = Path("/nowhere/lab")
    text = crontab_template(Box(box_root))
    example = next(line for line in text.splitlines() if line.startswith("# * * * * * "))
    python, script = shlex.split(example.removeprefix("# * * * * * "))
    assert (python, script) == (str(ROOT / ".venv/bin/python"), str(ROOT / "health_check.py"))
    done = subprocess.run(
        [python, script, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert subprocess.run([python, "-c", "import psutil"], timeout=60, check=False).returncode == 0
    assert f"~ is the box's home ({box_root}/home)" in " ".join(
        line.lstrip("# ") for line in text.splitlines()
    )
    assert "python3 ~/health_check.py" not in text
    assert "For a script of your own: the same python (or another with psutil) and its own" in text

"""make lab-check grades, not just passes: a learner's lab that is wrong in one way
fails exactly that step, with a reason naming the file, what was expected and what
was found; a right one passes all five. Each case runs in its own lab box."""

from __future__ import annotations

import datetime
import socket
import sys
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from labbox import ROOT, LabBox

from lab import Box, crontab_template, env_lines
from lab_check import (
    Failed,
    Product,
    check_health,
    check_sent,
    crontab_lines,
    report_path,
    scheduled_command,
)

HEALTH = f"{sys.executable} {ROOT / 'tests' / 'lab_impls' / 'lab_impl.py'} health"

# id (LAB_FAULT), the step that must fail, what its reason must say (" … ": anything between)
CASES = [
    ("not_resized", 1, "images/001.jpeg is 900x600, expected 600x400"),
    ("rgba_png", 1, "images/001.jpeg is a PNG file, not a JPEG"),
    (
        "upload_twice",
        2,
        "001.jpeg was uploaded 2 times (the store holds 001.jpeg, 001_ … upload each picture"
        " once; make lab FRESH=1 starts over with an empty store (and a new delivery)",
    ),
    ("weight_string", 3, 'Apple (001.txt): weight was sent as "137" (str), expected the number'),
    (
        "description_twice",
        3,
        "Apple (001.txt) is in the store 2 times: post each product once;"
        " make lab FRESH=1 starts over with an empty store (and a new delivery)",
    ),
    ("pdf_no_date", 4, "processed.pdf has no title 'Processed Update on "),
    ("mail_no_attachment", 4, "the report mail has no PDF attached (attachments: none)"),
    (
        "mail_twice",
        4,
        "the inbox has 2 mails with subject 'Upload Completed - Online Fruit Store': mail the"
        " report once; make lab FRESH=1 starts over",
    ),
    ("no_schedule", 5, "no line runs every minute (* * * * * COMMAND)"),
]


def graded(tmp_path, fault: str) -> tuple[int, dict, str]:
    with LabBox(tmp_path / "lab") as box:
        box.learners_steps("" if fault == "no_schedule" else fault)
        if fault != "no_schedule":
            box.schedule(HEALTH)
        return box.check()


def test_a_right_lab_passes_every_step(tmp_path):
    status, steps, output = graded(tmp_path, "")
    assert [steps[n][0] for n in range(1, 6)] == ["PASS"] * 5, output
    assert "mailed 'Error - CPU usage is over 80%' (arrived " in steps[5][1]
    assert status == 0


@pytest.mark.parametrize(("fault", "step", "reason"), CASES, ids=[c[0] for c in CASES])
def test_a_lab_wrong_in_one_way_fails_that_step_only(tmp_path, fault, step, reason):
    status, steps, output = graded(tmp_path, fault)
    assert steps[step][0] == "FAIL", output
    assert all(part in steps[step][1] for part in reason.split(" … ")), output
    assert [n for n in range(1, 6) if steps[n][0] == "FAIL"] == [step], output
    assert status == 1


OUR_STEPS = ["changeImage.py", "supplier_image_upload.py", "run.py", "report_email.py"]


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> dict:
    """The checker's verdict on our five scripts, run with no options as the lab runs them."""
    with LabBox(tmp_path_factory.mktemp("ours") / "lab") as box:
        for script in OUR_STEPS:
            done = box.run([sys.executable, str(ROOT / script)])
            assert done.returncode == 0, f"{script}: {done.stderr}"
        box.schedule(f"{sys.executable} {ROOT / 'health_check.py'}")
        status, steps, output = box.check()
    return {"status": status, "steps": steps, "output": output}


def test_our_scripts_pass_every_step(ours):
    assert [ours["steps"][n][0] for n in range(1, 6)] == ["PASS"] * 5, ours["output"]
    assert ours["status"] == 0


def test_no_box_is_exit_2_saying_how_to_start_one(tmp_path):
    box = LabBox(tmp_path / "nothing")
    status, steps, output = box.check()
    assert (status, steps) == (2, {})
    assert "no lab box in" in output
    assert "make lab" in output


# id, the box's crontab, the command found (or what the failure says)
SCHEDULES = [
    ("every minute", "* * * * * python3 ~/health_check.py\n", "python3 ~/health_check.py"),
    ("*/1", "*/1 * * * * ./health_check.py\n", "./health_check.py"),
    ("after comments", "# mine\n\nMAILTO=''\n* * * * * a b\n", "a b"),
    ("every five minutes", "*/5 * * * * ./health_check.py\n", "found only '*/5 * * * *"),
    ("at reboot", "@reboot ./health_check.py\n", "found only '@reboot ./health_check.py'"),
    (
        "template only",
        crontab_template(Box(ROOT / "lab")),
        "no line runs every minute (* * * * * COMMAND)",
    ),
]


@pytest.mark.parametrize(
    ("crontab", "expected"), [s[1:] for s in SCHEDULES], ids=[s[0] for s in SCHEDULES]
)
def test_the_schedule_is_an_every_minute_line_of_the_box_crontab(tmp_path, crontab, expected):
    box = Box(tmp_path)
    box.crontab.write_text(crontab)
    try:
        command, _ = scheduled_command(crontab_lines(box, system=False))
    except Failed as failure:
        command = str(failure)
    assert expected in command


def test_cron_variables_reach_the_command(tmp_path):
    box = Box(tmp_path)
    box.crontab.write_text("SMTP_PORT=2525\nPATH=/usr/bin:/bin\n* * * * * ./h.py\n")
    assert scheduled_command(crontab_lines(box, system=False)) == (
        "./h.py",
        {"SMTP_PORT": "2525", "PATH": "/usr/bin:/bin"},
    )


APPLE = Product("001", "Apple", 500, "An apple a day keeps the doctor away.")
# id, what the store's post log says was sent for the product, the reason (None: passes)
SENT = [
    ("a number", [{"json": {"name": "Apple", "weight": 500}}], None),
    ("text", [{"json": {"name": "Apple", "weight": "500"}}], 'sent as "500" (str), expected'),
    ("a fraction", [{"json": {"name": "Apple", "weight": 500.0}}], "sent as 500.0 (float)"),
    ("true", [{"json": {"name": "Apple", "weight": True}}], "sent as true (bool)"),
    ("a form", [{"json": None}], "posted as a form, not JSON: send the dictionary with"),
    ("nothing logged", [], None),
]


@pytest.mark.parametrize(("sent", "reason"), [s[1:] for s in SENT], ids=[s[0] for s in SENT])
def test_the_weight_is_graded_as_it_was_sent(sent, reason):
    if reason is None:
        check_sent(APPLE, sent)
        return
    with pytest.raises(Failed) as failure:
        check_sent(APPLE, sent)
    assert str(failure.value).startswith("Apple (001.txt)")
    assert reason in str(failure.value)


# id, the scheduled command (an alert arrived before each), PASS or FAIL, what the line says
EARLIER_ALERT = [
    (
        "script missing",
        f"{sys.executable} /nonexistent/health_check.py",
        "FAIL",
        "can't open file '/nonexistent/health_check.py'",
    ),
    ("command not found", "no-such-health-check", "FAIL", "no-such-health-check: not found"),
    (
        "traceback",
        f"{sys.executable} -c 'import no_such_module'",
        "FAIL",
        "(exit 1, said \"ModuleNotFoundError: No module named 'no_such_module'\")",
    ),
    ("killed", "kill -9 $$", "FAIL", "(killed by signal 9)"),
    ("exit 5", "exit 5", "FAIL", "(exit 5)"),
    ("healthy, quiet", "true", "PASS", "`true` runs (exit 0); no new alert this time"),
    ("warning", "echo HEALTH WARNING; exit 1", "PASS", "runs (exit 1, said 'HEALTH WARNING')"),
]


@pytest.fixture
def alerted_box(tmp_path) -> Iterator[Box]:
    """A box whose inbox got an alert a while ago, its SMTP port listening (nothing else)."""
    box = Box(tmp_path)
    for folder in (box.home, box.maildir):
        folder.mkdir()
    alert = EmailMessage()
    alert["Subject"] = "Error - CPU usage is over 80%"
    (box.maildir / "0001.eml").write_bytes(bytes(alert))
    with socket.socket() as smtp:
        smtp.bind(("127.0.0.1", 0))
        smtp.listen()
        ports = {"store": 0, "smtp": smtp.getsockname()[1], "inbox": 0}
        box.env_file.write_text(env_lines(box, ports))
        yield box


@pytest.mark.parametrize(
    ("command", "verdict", "said"),
    [row[1:] for row in EARLIER_ALERT],
    ids=[row[0] for row in EARLIER_ALERT],
)
def test_an_earlier_alert_counts_only_while_the_scheduled_command_runs(
    alerted_box, command, verdict, said
):
    alerted_box.crontab.write_text(f"* * * * * {command}\n")
    try:
        line = ("PASS", check_health(alerted_box, system_crontab=False, load_seconds=10))
    except Failed as failure:
        line = ("FAIL", str(failure))
    assert line[0] == verdict, line
    assert said in line[1]
    mailed = (alerted_box.maildir / "0001.eml").stat().st_mtime
    when = datetime.datetime.fromtimestamp(mailed).strftime("%Y-%m-%d %H:%M:%S")
    if verdict == "PASS":
        assert line[1].endswith(
            f"it mailed 'Error - CPU usage is over 80%' (arrived {when}, mail/0001.eml) before"
        )
    else:
        assert line[1].startswith(f"ran `{command}` as cron would and it does not run (")
        assert "an alert mailed before counts only while the scheduled command works" in line[1]


# id, which files exist (the box's PDF, /tmp/processed.pdf and what it holds), what the
# box mailed, the PDF graded or the reason it fails
REPORT_PATHS = [
    ("the box's own", {"own": b"%PDF-1 own", "lab": b"%PDF-1 other"}, [], "own"),
    ("the lab's, mailed by the box", {"lab": b"%PDF-1 ours"}, [b"%PDF-1 ours"], "lab"),
    (
        "the lab's, another box's",
        {"lab": b"%PDF-1 theirs"},
        [b"%PDF-1 ours"],
        "no report PDF at {own}, and {lab} is not the PDF this box mailed",
    ),
    ("the lab's, nothing mailed", {"lab": b"%PDF-1 x"}, [], "is not the PDF this box mailed"),
    ("none", {}, [b"%PDF-1 ours"], "no report PDF: neither {own} nor {lab} exists"),
]


@pytest.mark.parametrize(
    ("files", "mailed", "expected"), [c[1:] for c in REPORT_PATHS], ids=[c[0] for c in REPORT_PATHS]
)
def test_the_report_graded_is_the_boxs_own_or_the_one_it_mailed(tmp_path, files, mailed, expected):
    paths = {"own": tmp_path / "box" / "processed.pdf", "lab": tmp_path / "tmp" / "processed.pdf"}
    for name, content in files.items():
        paths[name].parent.mkdir(exist_ok=True)
        paths[name].write_bytes(content)
    if expected in paths:
        assert report_path(paths["own"], paths["lab"], mailed) == paths[expected]
    else:
        with pytest.raises(Failed) as failed:
            report_path(paths["own"], paths["lab"], mailed)
        assert expected.format(**paths) in str(failed.value)

#!/usr/bin/env python3
"""Run the whole pipeline on a generated delivery against the stand-ins.

Generates a 10-product delivery in demo-out/, starts the stand-in store and
the mail catcher on free loopback ports, runs each script in order the way a
user would (as a subprocess, configured through environment variables), and
prints a summary. Steps whose script does not exist yet are reported as
missing. Everything it started is stopped at the end; with --keep the store
stays up until Ctrl-C so the catalog can be browsed.

The output folder is the demo's own: it is created with a marker file, and a
later demo replaces only a folder that carries that marker. A folder the user
made (not empty, no marker) is refused, never deleted.

Usage:
    python sandbox/demo.py [--keep] [--out demo-out] [--count 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from email import message_from_binary_file, policy
from pathlib import Path

from make_delivery import make_delivery, parse_size

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "sandbox"
MARKER = ".fruit-catalog-demo"


def prepare_output(out: Path) -> None:
    """Empty out for a new demo, deleting it only when an earlier demo made it."""
    if (out / MARKER).is_file():
        shutil.rmtree(out)
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SystemExit(
            f"demo: {out} exists and was not made by the demo; not deleting it."
            " Give --out a new or empty folder."
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by sandbox/demo.py; a later demo may delete this folder\n")


def start_service(argv: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start a stand-in and return it with the first line it prints."""
    process = subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=log.open("w"), text=True
    )
    line = process.stdout.readline().strip()
    if not line:
        raise SystemExit(f"demo: {argv[0]} did not start; see {log}")
    return process, line


# health_check.py exits 1 or 2 when this machine is unhealthy: that is a
# finding, not a failure of the demo. Whether an alert was mailed is read from the
# mail catcher, never assumed (--no-email mails nothing; a known alert waits for
# its reminder).
HEALTH_FINDINGS = {1: "warning", 2: "unhealthy"}


def pipeline(out: Path, pdf: Path) -> list[tuple[str, list[str]]]:
    state = ["--state", str(out / "health-state.json")]
    return [
        ("changeImage.py", []),
        ("supplier_image_upload.py", []),
        ("run.py", []),
        ("report_email.py", ["--pdf", str(pdf)]),
        ("health_check.py", [*state, "--url", "{url}"]),
        ("health_check.py", ["--nagios", "--no-email", "--textfile", str(out / "health.prom")]),
    ]


def run_step(script: str, args: list[str], env: dict[str, str], maildir: Path) -> str:
    path = ROOT / script
    if not path.exists():
        print(f"-- {script}: missing (not written yet), skipped", flush=True)
        return "missing"
    args = [arg.format(url=env["CATALOG_URL"]) for arg in args]
    print(f"-- {script} {' '.join(args)}".rstrip(), flush=True)
    mailed_before = len(list(maildir.glob("*.eml")))
    result = subprocess.run([sys.executable, str(path), *args], env=env, check=False)
    mailed = len(list(maildir.glob("*.eml"))) - mailed_before
    if result.returncode == 0:
        status = "ok"
    elif script == "health_check.py" and result.returncode in HEALTH_FINDINGS:
        status = HEALTH_FINDINGS[result.returncode]
    else:
        status = f"exit {result.returncode}"
    if script == "health_check.py" and result.returncode:
        status += (
            f" ({mailed} alert{'s' * (mailed != 1)} mailed)" if mailed else " (nothing mailed)"
        )
    print(f"   {status}", flush=True)
    return status


def subject_of(mail: Path) -> str:
    with mail.open("rb") as stream:
        return message_from_binary_file(stream, policy=policy.default)["Subject"]


def products_in_store(url: str) -> int:
    with urllib.request.urlopen(url + "fruits/", timeout=10) as answer:
        return len(json.load(answer))


def print_outputs(out: Path, data: Path, pdf: Path) -> None:
    """Every file the pipeline left, so the user can open each one."""
    outputs = {
        "PDF:": pdf,
        "import record:": data / "imported.json",
        "import journal:": data / "imported.jsonl",
        "reports mailed:": data / "imported.mailed.jsonl",
        "upload journal:": data / "uploaded.jsonl",
        "health state:": out / "health-state.json",
        "Prometheus textfile:": out / "health.prom",
    }
    for label, path in outputs.items():
        print(f"  {label:26s} {path if path.exists() else '(none)'}")
    for log in sorted(out.glob("*.log")):
        print(f"  {'log:':26s} {log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "demo-out")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--size", type=parse_size, default=(3000, 2000), help="image size WxH")
    parser.add_argument("--keep", action="store_true", help="keep the store up until Ctrl-C")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    prepare_output(out)
    print(f"demo: generating {args.count} products in {out}", flush=True)
    data = make_delivery(out, count=args.count, size=args.size)
    maildir, pdf = out / "mail", out / "processed.pdf"

    store, url = start_service(
        [str(SANDBOX / "store.py"), "--port", "0", "--data", str(out / "store")], out / "store.log"
    )
    catcher, line = start_service(
        [str(SANDBOX / "mailcatcher.py"), "--maildir", str(maildir)], out / "mailcatcher.log"
    )
    smtp_port = line.split()[0].rsplit(":", 1)[1]
    env = {
        **os.environ,
        "SUPPLIER_DATA": str(data),
        "CATALOG_URL": url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": smtp_port,
        "SMTP_SECURITY": "none",
        "HOME": str(out),  # health_check.py's lock and state, and nothing of the user's
    }
    results: list[tuple[str, str]] = []
    try:
        results = [
            (script, run_step(script, extra, env, maildir)) for script, extra in pipeline(out, pdf)
        ]
        print("\ndemo summary")
        for script, result in results:
            print(f"  {script + ':':26s} {result}")
        mails = sorted(maildir.glob("*.eml"))
        print(f"  {'products in store:':26s} {products_in_store(url)}")
        print(f"  {'mails received:':26s} {len(mails)} in {maildir}")
        for mail in mails:
            print(f"  {'':26s} {mail.name}: {subject_of(mail)}")
        print_outputs(out, data, pdf)
        if args.keep:
            print(f"  {'catalog page:':26s} {url}")
            print("demo: store kept up; Ctrl-C to stop", flush=True)
            while store.poll() is None:
                time.sleep(1)
        else:
            print(f"  {'catalog page:':26s} store stopped; `make demo KEEP=1` keeps it up")
    except KeyboardInterrupt:
        pass
    finally:
        for process in (store, catcher):
            process.terminate()
            process.wait(timeout=10)
    failed = [s for s, r in results if r.startswith("exit")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run the whole pipeline on a generated delivery against the stand-ins.

Generates a 10-product delivery in demo-out/, starts the stand-in store and
the mail catcher on free loopback ports, runs each script in order the way a
user would (as a subprocess, configured through environment variables), and
prints a summary. Steps whose script does not exist yet are reported as
missing. Everything it started is stopped at the end; with --keep the store
stays up until Ctrl-C so the catalog can be browsed.

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
from pathlib import Path

from make_delivery import make_delivery

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "sandbox"


def start_service(argv: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start a stand-in and return it with the first line it prints."""
    process = subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=log.open("w"), text=True
    )
    line = process.stdout.readline().strip()
    if not line:
        raise SystemExit(f"demo: {argv[0]} did not start; see {log}")
    return process, line


def pipeline(out: Path, pdf: Path) -> list[tuple[str, list[str]]]:
    return [
        ("changeImage.py", []),
        ("supplier_image_upload.py", []),
        ("run.py", []),
        ("report_email.py", ["--pdf", str(pdf)]),
        ("health_check.py", ["--state", str(out / "health-state.json")]),
    ]


def run_step(script: str, args: list[str], env: dict[str, str]) -> str:
    path = ROOT / script
    if not path.exists():
        print(f"-- {script}: missing (not written yet), skipped", flush=True)
        return "missing"
    print(f"-- {script} {' '.join(args)}".rstrip(), flush=True)
    result = subprocess.run([sys.executable, str(path), *args], env=env, check=False)
    status = "ok" if result.returncode == 0 else f"exit {result.returncode}"
    print(f"   {status}", flush=True)
    return status


def products_in_store(url: str) -> int:
    with urllib.request.urlopen(url + "fruits/", timeout=10) as answer:
        return len(json.load(answer))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "demo-out")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the store up until Ctrl-C")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"demo: generating {args.count} products in {out}", flush=True)
    data = make_delivery(out, count=args.count)
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
    }
    results: dict[str, str] = {}
    try:
        results = {script: run_step(script, extra, env) for script, extra in pipeline(out, pdf)}
        print("\ndemo summary")
        print(f"  steps:             {', '.join(f'{s} {r}' for s, r in results.items())}")
        print(f"  products in store: {products_in_store(url)}")
        mails = sorted(maildir.glob("*.eml"))
        print(f"  mails received:    {len(mails)} in {maildir}")
        for mail in mails:
            print(f"                     {mail.name}")
        print(f"  PDF:               {pdf if pdf.exists() else '(none)'}")
        print(f"  catalog page:      {url}")
        if args.keep:
            print("demo: store kept up; Ctrl-C to stop", flush=True)
            while store.poll() is None:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for process in (store, catcher):
            process.terminate()
            process.wait(timeout=10)
    failed = [s for s, r in results.items() if r not in {"ok", "missing"}]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

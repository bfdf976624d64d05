"""run.py puts every description into the stand-in store exactly once, over HTTP."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

import run
from make_delivery import make_delivery

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "run.py"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch, caplog):
    monkeypatch.setattr(run, "BACKOFF_BASE", 0.01)
    monkeypatch.delenv("CATALOG_TOKEN", raising=False)
    caplog.set_level(logging.INFO)


def write(folder: Path, name: str, content: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def import_(store, data: Path, *extra: str) -> int:
    args = ["--url", store.url, "--descriptions", str(data / "descriptions")]
    args += ["--images", str(data / "images"), "--record", str(data / "imported.json"), *extra]
    return run.main(args)


def products(store) -> list[tuple]:
    return sorted((f["name"], f["weight"], f["image_name"]) for f in store.catalog.fruits())


def record(data: Path) -> dict:
    return json.loads((data / "imported.json").read_text())


# -- the happy path -------------------------------------------------------------


def test_every_description_becomes_a_product(store, delivery):
    assert import_(store, delivery) == 0
    listed = requests.get(store.url + "fruits/", timeout=5).json()
    fruits = sorted(listed, key=lambda f: f["image_name"])
    assert [f["image_name"] for f in fruits] == ["001.jpeg", "002.jpeg", "003.jpeg"]
    first = (delivery / "descriptions" / "001.txt").read_text().splitlines()
    assert fruits[0]["name"] == first[0]
    assert fruits[0]["weight"] == int(first[1].split()[0])
    assert fruits[0]["description"] == first[2]


def test_record_lists_each_file_with_its_outcome_and_store_id(store, delivery):
    write(delivery / "descriptions", "004.txt", "Broken\nheavy\nText")
    assert import_(store, delivery) == 1
    document = record(delivery)
    assert document["version"] == 1 and document["store"] == store.url
    assert document["summary"] == "imported 3, already in store 0, failed 1"
    by_file = {p["file"]: p for p in document["products"]}
    ids = {f["image_name"]: f["id"] for f in store.catalog.fruits()}
    assert by_file["001.txt"]["id"] == ids["001.jpeg"]
    assert by_file["001.txt"]["outcome"] == "imported"
    assert by_file["001.txt"]["weight"] > 0
    assert by_file["004.txt"]["outcome"] == "failed"
    assert "004.txt line 2: weight 'heavy'" in by_file["004.txt"]["reason"]
    assert import_(store, delivery) == 1
    again = {p["file"]: p for p in record(delivery)["products"]}
    assert again["001.txt"]["outcome"] == "imported"  # by this delivery, in the first run
    assert again["001.txt"]["id"] == ids["001.jpeg"]


def test_record_is_written_atomically_without_leftovers(store, delivery):
    import_(store, delivery)
    assert [p.name for p in delivery.iterdir() if p.name.startswith(".")] == []


def test_image_path_is_recorded_when_the_jpeg_exists(store, delivery):
    write(delivery / "images", "001.jpeg", b"\xff\xd8\xff")
    import_(store, delivery)
    by_file = {p["file"]: p for p in record(delivery)["products"]}
    assert by_file["001.txt"]["image_path"] == str(delivery / "images" / "001.jpeg")
    assert by_file["002.txt"]["image_path"] is None


def test_missing_image_is_a_warning(store, delivery, caplog):
    assert import_(store, delivery) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("001.txt: image 001.jpeg is not in" in w for w in warnings)


# -- messy descriptions ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw, name, weight, description",
    [
        (b"\xef\xbb\xbfApple\n500 lbs\nRed.", "Apple", 500, "Red."),
        (b"Apple\r\n500 lbs\r\nRed.\r\n", "Apple", 500, "Red."),
        ("Apple \u00a0\n500 lbs  \nRed.\u00a0 \n".encode(), "Apple", 500, "Red."),
        (b"\n\nApple\n500 lbs\n\nRed.\n\n\n", "Apple", 500, "Red."),
        (b"Apple\n500 lbs\nLine one.\nLine two.\n", "Apple", 500, "Line one.\nLine two."),
        pytest.param(
            b"Apple\n500 lbs\n",
            "Apple",
            500,
            "",
            marks=pytest.mark.xfail(
                reason="run.py posts description '' and the Django store, like the real"
                " one, answers 400 'This field may not be blank.'",
                strict=False,
            ),
        ),
        ("Crème brûlée\n5 lbs\nSüß.".encode(), "Crème brûlée", 5, "Süß."),
    ],
)
def test_messy_descriptions_are_read_right(store, tmp_path, raw, name, weight, description):
    write(tmp_path / "descriptions", "001.txt", raw)
    assert import_(store, tmp_path) == 0
    [fruit] = store.catalog.fruits()
    assert (fruit["name"], fruit["weight"], fruit["description"]) == (name, weight, description)


def test_cp1252_file_is_read_with_a_warning(store, tmp_path, caplog):
    write(tmp_path / "descriptions", "001.txt", "Crème\n5 lbs\nCafé".encode("cp1252"))
    assert import_(store, tmp_path) == 0
    assert store.catalog.fruits()[0]["name"] == "Crème"
    assert any("001.txt: not UTF-8" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("weight", ["500 lbs", "500lbs", "500 LBS", "500", "500 lb"])
def test_weight_forms_give_the_integer(weight):
    assert run.parse_weight(weight) == 500


@pytest.mark.parametrize(
    "content, line, value",
    [
        ("Apple\n1.5 lbs\nText", 2, "'1.5 lbs'"),
        ("Apple\nheavy\nText", 2, "'heavy'"),
        ("Apple\n500 kg\nText", 2, "'500 kg'"),
        ("\nApple\n\n-5 lbs\nText", 4, "'-5 lbs'"),
    ],
)
def test_bad_weight_fails_that_file_only(store, delivery, content, line, value, logged_errors):
    write(delivery / "descriptions", "004.txt", content)
    assert import_(store, delivery) == 1
    assert len(store.catalog.fruits()) == 3
    [message] = logged_errors()
    assert message.startswith(f"004.txt line {line}: weight {value}")


def test_missing_weight_and_empty_file_are_errors(store, tmp_path, logged_errors):
    write(tmp_path / "descriptions", "001.txt", "Apple\n")
    write(tmp_path / "descriptions", "002.txt", "")
    assert import_(store, tmp_path) == 1
    assert store.catalog.fruits() == []
    assert logged_errors() == [
        "001.txt: no weight line after the name 'Apple'",
        "002.txt: empty file, expected name, weight, description",
    ]


def test_store_rejection_carries_the_store_text(store, tmp_path, logged_errors):
    write(tmp_path / "descriptions", "003.txt", "Giant\n99999999999 lbs\nBig.")
    assert import_(store, tmp_path) == 1
    [message] = logged_errors()
    assert message == (
        "003.txt: the store rejected weight: Ensure this value is less than or equal to 2147483647."
    )


def test_check_reports_every_problem_without_the_store(tmp_path, caplog, logged_errors, dead_port):
    write(tmp_path / "descriptions", "001.txt", "Apple\n500 lbs\nOk")
    write(tmp_path / "descriptions", "002.txt", "Pear\n1.5 lbs\nNo")
    write(tmp_path / "descriptions", "003.txt", "x" * 101 + "\n5\nNo")
    url = f"http://127.0.0.1:{dead_port}/"
    result = run.main(["--url", url, "--descriptions", str(tmp_path / "descriptions"), "--check"])
    assert result == 1
    assert len(logged_errors()) == 2
    assert "name is 101 characters; the store accepts at most 100" in logged_errors()[1]
    assert caplog.records[-1].getMessage() == "checked 3 descriptions: 2 with problems"
    assert not (tmp_path / "imported.json").exists()


def test_dry_run_prints_payloads_and_sends_nothing(store, delivery, capsys):
    assert import_(store, delivery, "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith(f"POST {store.url}fruits/ {{")
    assert json.loads(lines[0].split(" ", 2)[2])["image_name"] == "001.jpeg"
    assert store.catalog.fruits() == []


# -- exactly once -----------------------------------------------------------------


def test_rerun_creates_nothing_new(store, delivery, caplog):
    assert import_(store, delivery) == 0
    (delivery / "imported.json").unlink()
    assert import_(store, delivery) == 0
    assert len(store.catalog.fruits()) == 3
    assert caplog.records[-1].getMessage() == "imported 0, already in store 3, failed 0"


def test_rerun_after_a_failure_finishes_and_the_record_keeps_earlier_imports(store, delivery):
    write(delivery / "descriptions", "004.txt", "Kiwi\nheavy\nGreen.")
    assert import_(store, delivery) == 1
    write(delivery / "descriptions", "004.txt", "Kiwi\n40 lbs\nGreen.")
    assert import_(store, delivery) == 0
    assert len(store.catalog.fruits()) == 4
    document = record(delivery)
    assert {p["outcome"] for p in document["products"]} == {"imported"}
    assert document["summary"] == "imported 4, already in store 0, failed 0"


def test_products_another_delivery_put_in_the_store_stay_already_in_store(store, delivery):
    for n in (1, 2, 3):
        text = (delivery / "descriptions" / f"00{n}.txt").read_text().splitlines()
        payload = {"name": text[0], "weight": 1, "image_name": f"00{n}.jpeg"}
        requests.post(store.url + "fruits/", json=payload, timeout=5)
    assert import_(store, delivery) == 0
    assert {p["outcome"] for p in record(delivery)["products"]} == {"already in store"}


def test_force_posts_again(store, delivery):
    import_(store, delivery)
    assert import_(store, delivery, "--force") == 0
    assert len(store.catalog.fruits()) == 6


@pytest.mark.parametrize(
    "faults",
    [
        {"fail_503_every": 2},
        {"fail_502_every": 2},
        {"drop_every": 2},
        {"slow_every": 2, "slow": 1.0},
        {"fail_502_every": 3, "drop_every": 2},
    ],
    ids=["503-before-work", "502-after-work", "dropped", "slow", "mixed"],
)
def test_every_product_ends_in_the_store_exactly_once_despite_faults(
    store_factory, tmp_path, faults, caplog
):
    store = store_factory(**faults)
    data = make_delivery(tmp_path, count=8, size=(30, 20))
    assert import_(store, data, "--timeout", "0.3") == 0
    names = [f["image_name"] for f in store.catalog.fruits()]
    assert sorted(names) == [f"{n:03d}.jpeg" for n in range(1, 9)]
    assert {p["outcome"] for p in record(data)["products"]} == {"imported"}
    # The faults really happened: a POST was sent again, or one was confirmed
    # in the store after its answer was lost (and not sent again).
    assert store.post_count > 8 or "confirmed in the store after" in caplog.text


def test_gives_up_after_the_retries_with_a_failure_per_product(
    store_factory, delivery, logged_errors
):
    store = store_factory(fail_503_every=1)
    assert import_(store, delivery, "--retries", "2") == 1
    assert store.catalog.fruits() == []
    assert sorted(logged_errors()) == [
        f"00{n}.txt: the store did not answer after 3 attempts (HTTP 503)" for n in (1, 2, 3)
    ]


def test_retry_after_is_honoured_with_a_cap():
    assert run.backoff(0, "3") == 3
    assert run.backoff(0, "100000") == run.BACKOFF_MAX
    assert run.backoff(3, None) == min(run.BACKOFF_MAX, run.BACKOFF_BASE * 8)
    assert run.backoff(0, "not a date") == run.BACKOFF_BASE


def test_store_down_is_one_clear_line_and_exit_2(delivery, logged_errors, dead_port):
    url = f"http://127.0.0.1:{dead_port}/"
    assert run.main(["--url", url, "--descriptions", str(delivery / "descriptions")]) == 2
    assert logged_errors() == [
        f"cannot reach the store at {url}: connection refused (set --url or CATALOG_URL)"
    ]
    assert not (delivery / "imported.json").exists()


def test_token_store_refuses_without_and_accepts_with_the_token(
    store_factory, delivery, caplog, monkeypatch, logged_errors
):
    store = store_factory(token="s3cr3t-t0ken")
    assert import_(store, delivery) == 2
    assert logged_errors() == ["the store refused the credentials (CATALOG_TOKEN)"]
    monkeypatch.setenv("CATALOG_TOKEN", "wrong")
    assert import_(store, delivery) == 2
    monkeypatch.setenv("CATALOG_TOKEN", "s3cr3t-t0ken")
    assert import_(store, delivery) == 0
    assert len(store.catalog.fruits()) == 3
    assert "s3cr3t-t0ken" not in caplog.text


def test_a_redirect_to_a_post_is_a_failure_not_followed(delivery, logged_errors, redirecting_store):
    args = ["--url", redirecting_store, "--descriptions", str(delivery / "descriptions")]
    assert run.main([*args, "--record", str(delivery / "r.json")]) == 1
    assert sorted(logged_errors()) == [
        f"00{n}.txt: the store answered 301 redirect to https://elsewhere.example/fruits/;"
        " check --url"
        for n in (1, 2, 3)
    ]


# -- as users run it ------------------------------------------------------------


def test_no_arguments_under_home_with_catalog_url(store, tmp_path):
    data = make_delivery(tmp_path, count=3, size=(30, 20))
    env = {**os.environ, "HOME": str(tmp_path), "CATALOG_URL": store.url}
    env.pop("SUPPLIER_DATA", None)
    result = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "INFO imported 3, already in store 0, failed 0"
    assert len(store.catalog.fruits()) == 3
    assert (data / "imported.json").exists()


def test_killed_part_way_and_run_again_ends_with_one_of_everything(store_factory, tmp_path):
    store = store_factory(delay=0.03)
    data = make_delivery(tmp_path, count=30, size=(30, 20))
    env = {**os.environ, "SUPPLIER_DATA": str(data), "CATALOG_URL": store.url}
    process = subprocess.Popen([SCRIPT, "--jobs", "2"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while len(store.catalog.fruits()) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 5 <= len(store.catalog.fruits()) < 30
    result = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    names = [f["image_name"] for f in store.catalog.fruits()]
    assert sorted(names) == [f"{n:03d}.jpeg" for n in range(1, 31)]


def test_record_defaults_to_beside_the_descriptions_folder(store, delivery):
    assert run.main(["--url", store.url, "--descriptions", str(delivery / "descriptions")]) == 0
    assert record(delivery)["summary"] == "imported 3, already in store 0, failed 0"


@pytest.mark.parametrize("name", ["CATALOG_JOBS", "CATALOG_TIMEOUT", "CATALOG_RETRIES"])
def test_a_bad_environment_value_is_a_usage_error(delivery, name):
    env = {**os.environ, "SUPPLIER_DATA": str(delivery), name: "lots"}
    result = subprocess.run([SCRIPT], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid" in result.stderr and "'lots'" in result.stderr

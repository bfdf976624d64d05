"""The stand-in store keeps the real service's contract, over real HTTP."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.utils.text import get_valid_filename
from helper import wait_for

ROOT = Path(__file__).resolve().parent.parent
APPLE = {"name": "Apple", "weight": 500, "description": "Red.", "image_name": "001.jpeg"}


def post_fruit(store, payload, **kwargs) -> requests.Response:
    return requests.post(store.url + "fruits/", json=payload, timeout=30, **kwargs)


def upload(store, name: str, content: bytes, field: str = "file") -> requests.Response:
    files = {field: (name, content, "image/jpeg")}
    return requests.post(store.url + "upload/", files=files, timeout=30)


def stored_images(store) -> list[str]:
    return sorted(path.name for path in store.catalog.images.iterdir())


def test_post_fruit_creates_and_returns_the_object(store):
    answer = post_fruit(store, APPLE)
    assert answer.status_code == 201
    assert answer.json() == {"id": 1, **APPLE}
    assert requests.get(store.url + "fruits/", timeout=30).json() == [{"id": 1, **APPLE}]


def test_list_is_oldest_first(store):
    for name in ["B", "A", "C"]:
        post_fruit(store, {"name": name, "weight": 1})
    names = [f["name"] for f in requests.get(store.url + "fruits/", timeout=30).json()]
    assert names == ["B", "A", "C"]


@pytest.mark.parametrize("weight, stored", [(500, 500), ("500", 500), (" 42 ", 42), (7.0, 7)])
def test_integer_weights_are_accepted(store, weight, stored):
    answer = post_fruit(store, {"weight": weight})
    assert answer.status_code == 201
    assert answer.json()["weight"] == stored


@pytest.mark.parametrize("weight", ["500 lbs", 1.5, "heavy", True, [5]])
def test_non_integer_weight_is_rejected(store, weight):
    answer = post_fruit(store, {"name": "X", "weight": weight})
    assert answer.status_code == 400
    assert answer.json() == {"weight": ["A valid integer is required."]}


def test_weight_out_of_the_integer_range_is_rejected(store):
    answer = post_fruit(store, {"weight": 2**31})
    message = "Ensure this value is less than or equal to 2147483647."
    assert (answer.status_code, answer.json()) == (400, {"weight": [message]})
    assert post_fruit(store, {"weight": 2**31 - 1}).status_code == 201


@pytest.mark.parametrize(
    "weight, message",
    [
        (2**31, "Ensure this value is less than or equal to 2147483647."),
        (-(2**31) - 1, "Ensure this value is greater than or equal to -2147483648."),
        (2**70, "Ensure this value is less than or equal to 2147483647."),
        ("9" * 30, "Ensure this value is less than or equal to 2147483647."),
    ],
)
def test_weight_outside_32_bits_is_rejected_with_drf_messages(store, weight, message):
    answer = post_fruit(store, {"weight": weight})
    assert (answer.status_code, answer.json()) == (400, {"weight": [message]})
    assert post_fruit(store, {"weight": -(2**31)}).status_code == 201


def test_missing_weight_is_required(store):
    answer = post_fruit(store, {"name": "X"})
    assert (answer.status_code, answer.json()) == (400, {"weight": ["This field is required."]})


def test_text_fields_default_to_empty_and_are_trimmed(store):
    answer = post_fruit(store, {"weight": 1, "name": "  Kiwi \n"})
    assert answer.json() == {
        "id": 1,
        "name": "Kiwi",
        "weight": 1,
        "description": "",
        "image_name": "",
    }


@pytest.mark.parametrize("blank", ["", "   ", "\n"])
def test_description_may_not_be_blank(store, blank):
    answer = post_fruit(store, {**APPLE, "description": blank})
    assert (answer.status_code, answer.json()) == (
        400,
        {"description": ["This field may not be blank."]},
    )
    assert store.catalog.fruits() == []


def test_name_and_image_name_may_be_blank(store):
    answer = post_fruit(store, {**APPLE, "name": "", "image_name": " "})
    assert answer.status_code == 201
    assert (answer.json()["name"], answer.json()["image_name"]) == ("", "")


@pytest.mark.parametrize("field", ["name", "weight", "description", "image_name"])
def test_null_is_refused(store, field):
    answer = post_fruit(store, {**APPLE, field: None})
    assert (answer.status_code, answer.json()) == (400, {field: ["This field may not be null."]})


def test_form_encoded_post_creates_a_product(store):
    form = {"name": "Kiwi", "weight": "3", "description": "Green.", "image_name": "k.jpeg"}
    answer = requests.post(store.url + "fruits/", data=form, timeout=30)
    assert (answer.status_code, answer.json()) == (201, {"id": 1, **form, "weight": 3})


def test_any_path_under_fruits_answers_the_list(store):
    post_fruit(store, APPLE)
    for path in ["fruits/anything", "fruits/1/", "fruits/a/b?c=d"]:
        answer = requests.get(store.url + path, timeout=30)
        assert (answer.status_code, answer.json()) == (200, [{"id": 1, **APPLE}])


@pytest.mark.parametrize(
    "field, limit", [("name", 100), ("description", 5000), ("image_name", 100)]
)
def test_text_field_limits(store, field, limit):
    assert post_fruit(store, {"weight": 1, field: "x" * limit}).status_code == 201
    answer = post_fruit(store, {"weight": 1, field: "x" * (limit + 1)})
    message = f"Ensure this field has no more than {limit} characters."
    assert (answer.status_code, answer.json()) == (400, {field: [message]})


def test_errors_of_several_fields_come_together(store):
    answer = post_fruit(store, {"name": "x" * 101})
    assert set(answer.json()) == {"name", "weight"}


@pytest.mark.parametrize("body, kind", [("apple", "str"), ([1], "list"), (3, "int")])
def test_body_that_is_not_an_object(store, body, kind):
    answer = post_fruit(store, body)
    message = f"Invalid data. Expected a dictionary, but got {kind}."
    assert (answer.status_code, answer.json()) == (400, {"non_field_errors": [message]})


def test_malformed_json_is_a_parse_error(store):
    answer = requests.post(
        store.url + "fruits/",
        data=b"{nope",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("JSON parse error")


@pytest.mark.parametrize("path", ["fruits", "upload"])
def test_post_without_trailing_slash_is_a_server_error(store, path):
    answer = requests.post(store.url + path, json=APPLE, timeout=30)
    assert answer.status_code == 500
    assert requests.get(store.url + "fruits/", timeout=30).json() == []


def test_upload_stores_the_file_and_serves_it(store):
    answer = upload(store, "001.jpeg", b"jpeg bytes")
    assert (answer.status_code, answer.content) == (201, b"")
    served = requests.get(store.url + "media/images/001.jpeg", timeout=30)
    assert (served.status_code, served.content) == (200, b"jpeg bytes")


def test_upload_of_a_taken_name_is_renamed_like_django(store):
    assert upload(store, "001.jpeg", b"first").status_code == 201
    assert upload(store, "001.jpeg", b"second").status_code == 201
    names = stored_images(store)
    assert names[0] == "001.jpeg"
    assert re.fullmatch(r"001_[A-Za-z0-9]{7}\.jpeg", names[1])
    assert (store.catalog.images / "001.jpeg").read_bytes() == b"first"


@pytest.mark.parametrize(
    "sent, kept",
    [
        ("fresh kiwi.jpeg", "fresh_kiwi.jpeg"),
        ("kiwi's (1) [2].jpeg", "kiwis_1_2.jpeg"),
        # requests (urllib3) sends a double quote as %22, which Django keeps.
        pytest.param('say "hi".jpeg', "say_22hi22.jpeg", id="double-quote"),
        ("pêche blanche.jpeg", "pêche_blanche.jpeg"),
        ("a+b=c;d.jpeg", "abcd.jpeg"),
    ],
)
def test_upload_names_are_cleaned_by_django(store, sent, kept):
    # The rule, straight from Django, applied to the name as it is sent.
    assert get_valid_filename(sent.replace('"', "%22")) == kept
    assert upload(store, sent, b"x").status_code == 201
    assert stored_images(store) == [kept]
    assert requests.get(store.url + "media/images/" + kept, timeout=30).content == b"x"


def test_long_upload_name_is_truncated_so_the_path_fits_100_characters(store):
    sent = "a" * 90 + ".jpeg"  # 95 characters: images/<name> would be 102
    assert upload(store, sent, b"x").status_code == 201
    [kept] = stored_images(store)
    # get_available_name(max_length=100): cut the stem and add _<7 random chars>.
    assert re.fullmatch(r"a{80}_[A-Za-z0-9]{7}\.jpeg", kept)
    assert len("images/" + kept) == 100


def test_upload_keeps_only_the_base_name(store):
    upload(store, "../../etc/evil.jpeg", b"x")
    assert stored_images(store) == ["evil.jpeg"]


def test_upload_without_file_field_is_empty_content(store):
    answer = upload(store, "001.jpeg", b"x", field="picture")
    assert (answer.status_code, answer.json()) == (400, {"detail": "Empty content"})


def test_upload_that_is_not_multipart_is_unsupported(store):
    answer = requests.post(store.url + "upload/", json={"file": "x"}, timeout=30)
    assert answer.status_code == 415
    assert stored_images(store) == []


def test_image_answers_get_and_head(store):
    upload(store, "001.jpeg", b"jpeg bytes")
    url = store.url + "media/images/001.jpeg"
    with requests.Session() as session:
        head = session.head(url, timeout=30)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["Content-Length"] == "10"
        assert head.headers["Content-Type"] == "image/jpeg"
        got = session.get(url, timeout=30)  # same kept-alive connection after the HEAD
        assert (got.status_code, got.content) == (200, b"jpeg bytes")


def test_missing_image_is_404(store):
    assert requests.get(store.url + "media/images/none.jpeg", timeout=30).status_code == 404


def test_catalog_page_lists_every_product(store):
    post_fruit(store, APPLE)
    post_fruit(store, {**APPLE, "name": "Cherry & <b>Berry</b>", "weight": 7})
    page = requests.get(store.url, timeout=30)
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    for text in ["Apple", "Weight: 500 lbs", "Red.", "/media/images/001.jpeg", "Weight: 7 lbs"]:
        assert text in page.text
    assert "Cherry &amp; &lt;b&gt;Berry&lt;/b&gt;" in page.text


def test_token_is_required_when_configured(store_factory):
    store = store_factory(token="s3cret")
    missing = requests.get(store.url + "fruits/", timeout=30)
    assert (missing.status_code, missing.json()) == (
        401,
        {"detail": "Authentication credentials were not provided."},
    )
    wrong = post_fruit(store, APPLE, headers={"Authorization": "Token nope"})
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid token."})
    right = post_fruit(store, APPLE, headers={"Authorization": "Token s3cret"})
    assert right.status_code == 201
    assert len(store.catalog.fruits()) == 1


def test_every_nth_post_fails_with_503_before_any_work(store_factory):
    store = store_factory(fail_503_every=2)
    statuses = [post_fruit(store, {**APPLE, "weight": n}).status_code for n in range(4)]
    assert statuses == [201, 503, 201, 503]
    assert [f["weight"] for f in store.catalog.fruits()] == [0, 2]


def test_every_nth_post_does_the_work_then_answers_502(store_factory):
    store = store_factory(fail_502_every=2)
    statuses = [post_fruit(store, {**APPLE, "weight": n}).status_code for n in range(4)]
    assert statuses == [201, 502, 201, 502]
    assert [f["weight"] for f in store.catalog.fruits()] == [0, 1, 2, 3]


def test_every_nth_post_does_the_work_then_drops_the_connection(store_factory):
    store = store_factory(drop_every=2)
    assert post_fruit(store, APPLE).status_code == 201
    with pytest.raises(requests.ConnectionError):
        post_fruit(store, APPLE)
    assert len(store.catalog.fruits()) == 2


def test_drop_applies_to_uploads_too(store_factory):
    store = store_factory(drop_every=1)
    with pytest.raises(requests.ConnectionError):
        upload(store, "001.jpeg", b"x")
    assert stored_images(store) == ["001.jpeg"]


def test_slow_posts_answer_after_the_work(store_factory):
    store = store_factory(slow_every=1, slow=5)
    with pytest.raises(requests.ReadTimeout):
        requests.post(store.url + "fruits/", json=APPLE, timeout=(5, 0.1))
    wait_for(lambda: store.catalog.fruits())  # the work is done, though nobody waited for it
    assert len(store.catalog.fruits()) == 1


def test_stalled_post_lands_after_the_client_gave_up_exactly_once(store_factory):
    store = store_factory(stall_every=2, stall=2.5)
    assert post_fruit(store, {**APPLE, "weight": 1}).status_code == 201
    with pytest.raises(requests.ReadTimeout):
        requests.post(store.url + "fruits/", json={**APPLE, "weight": 2}, timeout=(5, 0.2))
    assert [f["weight"] for f in store.catalog.fruits()] == [1]  # not done yet
    wait_for(lambda: len(store.catalog.fruits()) == 2)
    assert [f["weight"] for f in store.catalog.fruits()] == [1, 2]
    assert store.post_count == 2


def test_the_rename_fault_keeps_uploads_under_names_of_the_stores_own(store_factory):
    store = store_factory(rename_every=2)
    assert upload(store, "001.jpeg", b"first").status_code == 201
    assert upload(store, "002.jpeg", b"second").status_code == 201
    assert requests.get(store.url + "media/images/002.jpeg", timeout=30).status_code == 404
    [renamed] = [name for name in stored_images(store) if name != "001.jpeg"]
    assert re.fullmatch(r"[0-9a-f]{8}-002\.jpeg", renamed)
    assert (store.catalog.images / renamed).read_bytes() == b"second"


def test_post_count_counts_posts_that_reach_a_view(store):
    post_fruit(store, APPLE)
    upload(store, "001.jpeg", b"x")
    requests.post(store.url + "fruits", json=APPLE, timeout=30)  # 500 before any view
    requests.get(store.url + "fruits/", timeout=30)
    assert store.post_count == 2


def test_delay_slows_every_response(store_factory):
    store = store_factory(delay=0.5)
    with pytest.raises(requests.ReadTimeout):
        requests.get(store.url + "fruits/", timeout=(5, 0.1))


def test_keep_alive_serves_several_requests_on_one_connection(store):
    host, port = store.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    for weight in (1, 2):
        body = json.dumps({"weight": weight})
        connection.request("POST", "/fruits/", body, {"Content-Type": "application/json"})
        assert connection.getresponse().read() and connection.sock is not None
    connection.close()
    assert len(store.catalog.fruits()) == 2


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_started_from_the_command_line_prints_its_url_and_stops_cleanly(tmp_path, stop):
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "sandbox" / "store.py"),
            "--port",
            "0",
            "--data",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        assert post_fruit(type("S", (), {"url": url}), APPLE).status_code == 201
    finally:
        process.send_signal(stop)
    assert process.wait(timeout=10) == 0
    assert (tmp_path / "store.sqlite3").exists()

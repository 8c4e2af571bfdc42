"""The sample's paths: every value with its JSON type, shortened value and expression."""

from __future__ import annotations

import jmespath

from shared.ops.sample_paths import MAX_PATHS, sample_paths

REQUEST = {
    "method": "POST",
    "query": {"item": "5", "filter": {"status": "paid"}},
    "headers": {"x-request-id": "r-1"},
    "body": {"customer": {"name": "Ada", "vip": True}, "lines": [{"sku": "A", "qty": 2}], "note": "x" * 200},
}


def test_every_path_has_its_type_value_and_an_expression_that_reads_it() -> None:
    found = sample_paths("e1", REQUEST)
    rows = {p.path: (p.type, p.value) for p in found.paths}
    assert rows["request.body.customer.name"] == ("string", '"Ada"')
    assert rows["request.body.customer.vip"] == ("boolean", "true")
    assert rows["request.body.lines"] == ("array", '[{"sku":"A","qty":2}]')
    assert rows["request.body.lines[0].qty"] == ("integer", "2")
    assert rows["request.query.filter.status"] == ("string", '"paid"')
    assert rows['request.headers."x-request-id"'] == ("string", '"r-1"')
    assert rows["request.body.note"][1] == '"' + "x" * 76 + "..."
    for path in found.paths:
        assert path.expression == "{{ " + path.path + " }}"
        value = jmespath.search(path.path, {"request": REQUEST})
        assert value is not None, path.path
    assert not found.truncated


def test_a_huge_sample_is_cut_and_says_so() -> None:
    found = sample_paths("e1", {"body": {f"k{i}": i for i in range(MAX_PATHS + 10)}})
    assert (len(found.paths), found.truncated) == (MAX_PATHS, True)

"""``GET /search/tickets``: quoting, limits, paging and a minimal Freshquery grammar."""

from __future__ import annotations

from datetime import UTC, datetime

QUERY_INVALID = (
    "Given query is invalid, expected format \"keyword:value  OPERATOR keyword:'string' OPERATOR "
    "keyword:>'yyyy-mm-dd' OPERATOR keyword:<integer\". Space is mandatory between key/value pair and "
    "operator. Please check the paranthesis if there are any."
)


def search(client, query: str, **params):
    return client.get("/search/tickets", params={"query": query, **params})


def visible(sim):
    return [t for t in sim.store.tickets.values() if not (t.spam or t.deleted)]


def test_the_query_must_be_double_quoted(client):
    for query in ("priority:3", "'priority:3'"):
        response = search(client, query)
        assert response.status_code == 400
        assert response.json()["errors"] == [
            {"field": "query", "message": QUERY_INVALID, "code": "invalid_value"}
        ]
    assert search(client, '"priority:3"').status_code == 200


def test_limits_on_length_page_and_per_page(client):
    long_query = '"' + " OR ".join(["priority:3"] * 50) + '"'
    too_long = search(client, long_query)
    assert too_long.json()["errors"][0] == {
        "field": "query",
        "message": f"Has {len(long_query) - 2} characters, it can have maximum of 512 characters",
        "code": "invalid_value",
    }
    assert search(client, '"priority:3"', page=11).json()["errors"][0]["message"] == (
        "It should be a Positive Integer less than or equal to 10"
    )
    per_page = search(client, '"priority:3"', per_page=10).json()["errors"][0]
    assert per_page == {
        "field": "per_page",
        "message": "Unexpected/invalid field in request",
        "code": "invalid_field",
    }


def test_results_match_the_query_with_30_per_page(sim, client):
    expected = {t.id for t in visible(sim) if t.priority >= 2 and t.type in ("Incident", "Problem")}
    query = "\"priority:>2 AND (type:'Incident' OR type:'problem')\""
    first = search(client, query).json()
    assert first["total"] == len(expected) > 30
    assert len(first["results"]) == 30
    found = set()
    for page in range(1, 11):
        results = search(client, query, page=page).json()["results"]
        found |= {r["id"] for r in results}
        if len(results) < 30:
            break
    assert found == expected
    created = [r["created_at"] for r in first["results"]]
    assert created == sorted(created, reverse=True)
    assert "description_text" in first["results"][0]


def test_null_tags_dates_and_custom_fields(sim, client):
    untriaged = search(client, '"group_id:null AND type:null"').json()
    assert untriaged["total"] == len(sim.truth())  # the open tickets, and only they
    assert {r["id"] for r in untriaged["results"]} <= set(sim.truth())
    tagged = {t.id for t in visible(sim) if "vip" in t.tags}
    assert {r["id"] for r in search(client, "\"tag:'vip'\"").json()["results"]} == tagged
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    today = {
        t.id for t in visible(sim) if datetime.fromtimestamp(t.created_at, UTC).strftime("%Y-%m-%d") >= day
    }
    assert search(client, f"\"created_at:>'{day}'\"").json()["total"] == len(today)
    api = {t.id for t in visible(sim) if t.custom_fields["cf_product"] == "API"}
    assert search(client, "\"cf_product:'API'\"").json()["total"] == len(api)


def test_invalid_fields_and_values(client):
    unknown = search(client, '"xxx:yyy"')
    assert unknown.json()["errors"] == [
        {"field": "xxx", "message": "Unexpected/invalid field in request", "code": "invalid_field"}
    ]
    assert search(client, '"priority:7"').json()["errors"][0] == {
        "field": "priority",
        "message": "It should be one of these values: '1,2,3,4'",
        "code": "invalid_value",
    }
    assert search(client, "\"type:'Complaint'\"").json()["errors"][0]["field"] == "type"
    assert search(client, "\"cf_product:'Toaster'\"").json()["errors"][0]["field"] == "cf_product"
    for broken in ('"priority:3 AND"', '"(priority:3"', '"priority:3 status:2"', "\"type:>'Incident'\""):
        assert search(client, broken).json()["errors"][0]["message"] == QUERY_INVALID, broken

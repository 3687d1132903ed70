"""The import options (shared.imports.options): each declared once, loaded and documented by the same
schemas, from a JSON body or a form's text alike."""

from __future__ import annotations

import dataclasses
import json

import pytest

from shared.imports.options import (
    MODE_OPTIONS,
    OPTION_FIELDS,
    READING_OPTIONS,
    ImportOptions,
    OptionError,
    PreviewOptionsSchema,
    StartOptionsSchema,
    UploadOptionsSchema,
    load_options,
)


def test_each_option_is_one_field_of_import_options_and_every_request_schema_takes_it() -> None:
    assert list(OPTION_FIELDS) == [f.name for f in dataclasses.fields(ImportOptions)]
    assert set(OPTION_FIELDS) <= set(UploadOptionsSchema().fields) - {"dry_run", "preview", "callback_url"}
    assert set(StartOptionsSchema().fields) == {*OPTION_FIELDS, "dry_run", "callback_url"}
    assert set(PreviewOptionsSchema().fields) == set(READING_OPTIONS)


def test_a_form_and_a_json_body_give_the_same_options() -> None:
    mapping = {"email": "D", "address": ["B", "C"], "phone": 5}
    form = load_options(
        UploadOptionsSchema(),
        {"mapping": json.dumps(mapping), "header_row": "2", "sheet": "3", "mode": "Insert", "dry_run": ""},
    )
    body = load_options(StartOptionsSchema(), {"mapping": mapping, "header_row": 2, "sheet": 3, "mode": "insert"})
    expected = ImportOptions(mapping={"email": "D", "address": ["B", "C"], "phone": "5"}, header_row=2, sheet="3")
    assert form["options"] == body["options"] == dataclasses.replace(expected, mode="insert")
    assert form["dry_run"] is True and "dry_run" not in body  # a bare form flag is true


def test_every_option_wrong_is_named() -> None:
    with pytest.raises(OptionError) as caught:
        load_options(
            StartOptionsSchema(),
            {"mapping": {"bogus": "A", "email": ["A", "B"]}, "header_row": -1, "match_on": "name", "dry_run": "yes"},
        )
    named = dict(caught.value.errors)
    assert set(named) == {"mapping.bogus", "mapping.email", "header_row", "match_on", "dry_run"}
    assert named["match_on"] == f"One of: {', '.join(MODE_OPTIONS['match_on'])}."
    assert named["dry_run"] == "Not a boolean."  # a JSON body says true or false


def test_the_api_document_shows_the_options_as_declared() -> None:
    from gateway.openapi.document import build_spec

    schemas = build_spec()["components"]["schemas"]
    for component in ("UploadForm", "StartOptions"):
        properties = schemas[component]["properties"]
        assert set(OPTION_FIELDS) <= set(properties), component
        for name, choices in MODE_OPTIONS.items():
            assert properties[name]["enum"] == list(choices)
            assert set(properties[name]["x-choices"]) == set(choices)
    assert set(schemas["PreviewOptions"]["properties"]) == set(READING_OPTIONS)

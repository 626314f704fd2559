import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biofm.errors import BiofmError
from biofm.text.config import CleaningConfig
from biofm.text.corpus import (
    Cleaner,
    CleaningReport,
    Document,
    clean_documents,
    iter_documents,
    list_files,
    normalise_whitespace,
    read_file,
    remove_citations,
    remove_control_chars,
    remove_non_ascii,
)

# ------------------------------------------------------------------------------- cleaning, line by line


@pytest.mark.parametrize(
    ("text", "expected", "n"),
    [
        ("Cells divide [1].", "Cells divide.", 1),
        ("as shown [1,2] and [3-5] here", "as shown and here", 2),
        ("see [12, 14–16]; also [7; 9]", "see; also", 2),
        ("refs [1][2] end", "refs end", 2),
        ("[3] Leading", " Leading", 1),
        ("no citations here", "no citations here", 0),
        # bracketed text that is not a numeric citation stays
        ("intracellular [Ca2+] rose", "intracellular [Ca2+] rose", 0),
        ("see [see text] and [3H]-naloxone", "see [see text] and [3H]-naloxone", 0),
        ("imidazo[1,5-a]pyrrolo", "imidazo[1,5-a]pyrrolo", 0),
        ("pyrrolo[2,1-c][1,4]benzodiazepine", "pyrrolo[2,1-c][1,4]benzodiazepine", 0),
        ("stay was 7 (6-12 [1-216]) h", "stay was 7 (6-12 [1-216]) h", 0),
        ("a [x] b [ab] c [1a]", "a [x] b [ab] c [1a]", 0),  # `[.*?]` as a character class would eat these
    ],
)
def test_citation_markers(text, expected, n):
    assert remove_citations(text) == (expected, n)


def test_the_letter_n_is_never_deleted():
    text = "Nanoparticles in neurons\nand\tnine nonsense n-grams [1]\n"
    out = Cleaner().clean_text(text)
    assert out == "Nanoparticles in neurons and nine nonsense n-grams"
    assert out.count("n") == text.count("n")


@given(st.text(alphabet=st.sampled_from("anN \t\n[]1,-xé"), max_size=60))
@settings(max_examples=100, deadline=None)
def test_cleaning_only_removes_what_it_counts(text):
    report = CleaningReport()
    out = Cleaner(CleaningConfig(citations=False), report).clean_text(text)
    # with citations off, every letter survives and only whitespace changes
    assert [c for c in out if not c.isspace()] == [c for c in text if not c.isspace()]
    assert "  " not in out and out == out.strip()


@pytest.mark.parametrize(
    ("text", "expected", "n"),
    [
        ("a\x00b\x07c", "abc", 2),
        ("tab\tnew\nline\r", "tab\tnew\nline\r", 0),  # whitespace is the whitespace step's business
        ("del\x7fc1\x9bx", "delc1x", 2),
        ("next\x85line\x1fhere", "next line here", 2),  # separators become a space, not a join
        ("café β", "café β", 0),
    ],
)
def test_control_characters(text, expected, n):
    assert remove_control_chars(text) == (expected, n)


@pytest.mark.parametrize(
    ("text", "expected", "n"),
    [
        ("a b c", "a b c", 0),
        ("  a \t b\n\nc  ", "a b c", 4),  # leading, ' \t ', '\n\n', trailing
        ("a\u00a0b", "a b", 1),  # non-breaking space
        ("   ", "", 1),
        ("", "", 0),
        ("one  two", "one two", 1),
    ],
)
def test_whitespace(text, expected, n):
    assert normalise_whitespace(text) == (expected, n)


def test_ascii_only():
    assert remove_non_ascii("β-catenin café") == ("-catenin caf", 2)
    report = CleaningReport()
    out = Cleaner(CleaningConfig(ascii_only=True), report).clean_text("α β γ done")
    assert out == "done" and report.non_ascii_removed == 3


def test_report_counts_are_exact_and_saved(tmp_path):
    docs = [
        Document("First  doc [1].", "f", 1),
        Document("first doc.", "f", 2),
        Document("First doc.", "f", 3),  # duplicate of doc 1 after cleaning
        Document("x", "f", 4),  # too short
        Document("bad\x00char", "f", 5),
    ]
    report = CleaningReport()
    kept = list(clean_documents(docs, CleaningConfig(min_chars=3), report))
    assert [d.text for d in kept] == ["First doc.", "first doc.", "badchar"]
    assert [d.line for d in kept] == [1, 2, 5]
    assert report.documents_read == 5 and report.documents_kept == 3
    assert report.citation_markers_removed == 1
    assert report.whitespace_runs_collapsed == 1  # the double space (the citation took its own space)
    assert report.control_chars_removed == 1
    assert report.duplicates_removed == 1 and report.too_short_removed == 1
    assert report.characters_read == sum(len(d.text) for d in docs)
    assert report.characters_kept == sum(len(d.text) for d in kept)
    table = report.table()
    assert "duplicate documents removed" in table and "off" in table  # ascii_only is off
    assert "(< 3 chars)" in table
    report.save(tmp_path / "r.json")
    assert CleaningReport.from_dict(json.loads((tmp_path / "r.json").read_text())) == report


def test_dedup_off_keeps_duplicates():
    docs = [Document("same", "f", 1), Document("same", "f", 2)]
    report = CleaningReport()
    assert len(list(clean_documents(docs, CleaningConfig(dedup=False), report))) == 2
    assert report.duplicates_removed == 0


# ------------------------------------------------------------------------------------------- reading


def test_txt_is_one_document_per_line(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("\ufefffirst doc\n\n  \nsecond doc\r\nthird")
    docs = list(read_file(f))
    assert [(d.text, d.line) for d in docs] == [("first doc", 1), ("second doc", 4), ("third", 5)]


def test_jsonl_with_a_configured_field_and_gz(tmp_path):
    rows = [{"body": "one", "id": 1}, {"body": "two"}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"body": "three"}) + "\n")
    with gzip.open(tmp_path / "c.txt.gz", "wt") as fh:
        fh.write("four\nfive\n")
    docs = list(iter_documents([tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz", tmp_path / "c.txt.gz"], "body"))
    assert [d.text for d in docs] == ["one", "two", "three", "four", "five"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "ok"', r"bad\.jsonl, line 2: invalid JSON: .*column"),
        ('{"other": "x"}', r"bad\.jsonl, line 2: no 'text' field"),
        ('{"text": null}', r"bad\.jsonl, line 2: no 'text' field"),
        ('{"text": 5}', r"bad\.jsonl, line 2: field 'text' is a int, expected a string"),
        ('["text"]', r"bad\.jsonl, line 2: expected a JSON object, got list"),
        ('{"text": "\\ud800"}', r"bad\.jsonl, line 2: .*unpaired surrogate"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, line, message):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(BiofmError, match=message):
        list(read_file(f))


def test_reading_is_lazy(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "fine"}\nnot json\n')
    docs = read_file(f)
    assert next(docs).text == "fine"  # the bad line is not read yet
    with pytest.raises(BiofmError, match="line 2"):
        next(docs)


def test_binary_and_undecodable_files(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"ok\nalso ok\n\xff\xfe bad\n")
    with pytest.raises(BiofmError, match=r"a\.txt, line 3: not UTF-8"):
        list(read_file(f))
    g = tmp_path / "b.txt"
    g.write_bytes(b"ok\n\x00\x01\x02\n")
    with pytest.raises(BiofmError, match=r"b\.txt, line 2: binary data"):
        list(read_file(g))
    h = tmp_path / "c.jsonl.gz"
    h.write_bytes(gzip.compress(b'{"text": "a"}\n' * 1000)[:60])
    with pytest.raises(BiofmError, match=r"c\.jsonl\.gz.*truncated or corrupt gzip"):
        list(read_file(h))


def test_folders_are_recursive_sorted_and_filtered(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "x.txt").write_text("b-x\n")
    (tmp_path / "a" / "z.jsonl").write_text('{"text": "a-z"}\n')
    (tmp_path / "a" / "y.txt").write_text("a-y\n")
    (tmp_path / "a" / "notes.md").write_text("ignored\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "h.txt").write_text("ignored\n")
    files = list_files([tmp_path, tmp_path / "a" / "y.txt"])  # a file listed twice is read once
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/y.txt", "a/z.jsonl", "b/x.txt"]
    assert [d.text for d in iter_documents([tmp_path])] == ["a-y", "a-z", "b-x"]


def test_path_errors(tmp_path):
    with pytest.raises(BiofmError, match="not found"):
        list_files([tmp_path / "missing.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BiofmError, match=r"empty: no \.txt or \.jsonl"):
        list_files([tmp_path / "empty"])
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(BiofmError, match=r"data\.csv: unsupported file type"):
        list_files([tmp_path / "data.csv"])

"""The shipped corpus and the loader's one-line errors."""

from __future__ import annotations

import json
import re

import pytest

from emogeom.emotions import EMOTIONS, VAD, by_valence
from emogeom.errors import EmogeomError
from emogeom.stimuli import load_corpus, load_neutral_sentences
from emogeom.stimuli.corpus import default_corpus_path


def test_shipped_corpus_is_complete_and_balanced():
    from collections import Counter

    corpus = load_corpus()
    counts = corpus.counts()
    assert set(counts) == set(EMOTIONS) and len(EMOTIONS) == 21
    assert min(counts.values()) >= 50
    assert len({s.text for s in corpus.stimuli}) == len(corpus.stimuli)
    assert len(corpus.styles) >= 5
    assert all(s.style and s.topic and s.person for s in corpus.stimuli)
    assert len({s.topic for s in corpus.stimuli}) >= 20
    cells = Counter((s.style, s.emotion) for s in corpus.stimuli)
    for style in corpus.styles:  # every condition has the same count in every style
        assert len({cells[style, e] for e in EMOTIONS}) == 1, style
    for e in EMOTIONS:  # every condition covers every topic
        assert len({s.topic for s in corpus.stimuli if s.emotion == e}) >= 20, e
    assert len(load_neutral_sentences().stimuli) >= 20


def test_shipped_texts_avoid_emotion_words():
    synonyms = json.loads((default_corpus_path().parent / "synonyms.json").read_text())
    for s in load_corpus().stimuli:
        for word in synonyms[s.emotion] + [e for e in EMOTIONS]:
            assert not re.search(rf"\b{re.escape(word)}\b", s.text, re.I), (s.id, word)


def test_norms_order():
    assert set(VAD) == set(EMOTIONS)
    order = by_valence()
    assert order[0] == "happy" and order[-1] == "afraid"


def test_per_emotion_subset_changes_hash():
    full, three = load_corpus(), load_corpus(per_emotion=3)
    assert set(three.counts().values()) == {3}
    assert full.sha256 != three.sha256


def _write(tmp_path, lines):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def _good_lines(n=2):
    return [json.dumps({"emotion": e, "id": f"{e}-{i}", "text": f"Story {k} number {i}."})
            for k, e in enumerate(EMOTIONS) for i in range(n)]


@pytest.mark.parametrize(
    "lines, message",
    [
        ([], "is empty"),
        (_good_lines() + ['{"emotion": "joyful", "id": "x", "text": "t."}'],
         "unknown emotion label 'joyful'"),
        (_good_lines()[:-1], "fewer than 2 stories: neutral (1)"),
        (_good_lines() + ["{not json"], "not valid JSON"),
        (_good_lines() + ['{"emotion": "sad", "id": "sad-0", "text": "dup."}'], "duplicate id"),
        (_good_lines() + ['{"emotion": "sad", "id": "y", "text": ""}'], "'text' is missing"),
    ],
)
def test_bad_corpus_errors(tmp_path, lines, message):
    with pytest.raises(EmogeomError, match=re.escape(message)) as info:
        load_corpus(_write(tmp_path, lines))
    assert "\n" not in str(info.value)


def test_missing_corpus_file(tmp_path):
    with pytest.raises(EmogeomError, match="not found"):
        load_corpus(tmp_path / "nope.jsonl")


def test_csv_corpus_and_emotion_subset(tmp_path):
    import csv

    path = tmp_path / "c.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "id", "text"])
        for e in ("sad", "happy", "calm"):
            for i in range(2):
                w.writerow([e, f"{e}{i}", f"A story {e} {i}."])
    corpus = load_corpus(path)
    assert corpus.emotions == ("happy", "sad", "calm")  # canonical order, subset kept
    assert corpus.counts() == {"happy": 2, "sad": 2, "calm": 2}


def test_too_few_emotions(tmp_path):
    lines = [json.dumps({"emotion": e, "id": f"{e}{i}", "text": "t."})
             for e in ("sad", "happy") for i in range(2)]
    with pytest.raises(EmogeomError, match="needs at least 3"):
        load_corpus(_write(tmp_path, lines))


def test_fixed_halves_balanced_and_deterministic():
    from collections import Counter

    from emogeom.stimuli import fixed_halves

    corpus = load_corpus()
    a, b = fixed_halves(corpus)
    a2, _ = fixed_halves(corpus)
    assert a.tolist() == a2.tolist() and not set(a) & set(b)
    for half in (a, b):
        per = Counter(corpus.stimuli[i].emotion for i in half)
        assert set(per.values()) == {len(corpus.stimuli) // 42}
        cells = Counter((corpus.stimuli[i].emotion, corpus.stimuli[i].style) for i in half)
        assert set(cells.values()) == {5}  # half of every style within every emotion


def test_shipped_corpus_passes_check():
    from emogeom.stimuli.check import check_corpus

    rep = check_corpus()
    assert rep.ok, rep.errors
    assert not rep.warnings, rep.warnings
    assert rep.length_ratio <= 1.3 and len(rep.style_ratios) >= 5
    assert all(ratio <= 1.3 for ratio in rep.style_ratios.values()), rep.style_ratios
    assert all(r.count >= 50 and not r.leaks and r.topics == 20 for r in rep.rows)
    assert rep.topics >= 20
    assert all(set(row.values()) == {10} for row in rep.styles.values())
    assert len(load_neutral_sentences().stimuli) >= 60


def test_check_warns_on_unbalanced_styles(tmp_path):
    from emogeom.stimuli.check import check_corpus

    lines = [json.dumps({"emotion": e, "text": f"A {e} text number {i}{'!' * (9 * i)}.",
                         "style": "a" if i < 2 or e != "sad" else "b"})
             for e in EMOTIONS[:3] for i in range(3)]
    rep = check_corpus(load_corpus(_write(tmp_path, lines)))
    assert rep.styles == {"a": {"happy": 3, "sad": 2, "calm": 3},
                          "b": {"happy": 0, "sad": 1, "calm": 0}}
    assert any("style 'a': unequal counts per emotion 2..3" in w for w in rep.warnings)
    assert rep.style_ratios["a"] > 1.3  # sad lacks the longest text
    assert any("style 'a': mean length ratio" in w for w in rep.warnings)


def test_check_finds_leaks_and_duplicates(tmp_path):
    from typer.testing import CliRunner

    from emogeom.cli import app
    from emogeom.stimuli.check import check_corpus

    lines = _good_lines(3)
    lines.append(json.dumps({"emotion": "sad", "id": "sad-leak", "text": "She was so Sad."}))
    calm0 = json.loads(lines[3 * EMOTIONS.index("calm")])["text"]
    lines.append(json.dumps({"emotion": "calm", "id": "calm-x", "text": calm0}))
    rep = check_corpus(_write(tmp_path, lines))
    assert any("sad: 1 stories" in e for e in rep.errors)
    assert any("duplicate texts: calm-0, calm-x" in e for e in rep.errors)
    assert any("unequal counts" in w for w in rep.warnings)
    result = CliRunner().invoke(app, ["corpus", "check", str(tmp_path / "c.jsonl")])
    assert result.exit_code == 1
    ok = CliRunner().invoke(app, ["corpus", "check"])
    assert ok.exit_code == 0 and "leaking stories = 0" in ok.output
    assert "texts per style × emotion" in ok.output and "6 styles, 20 topics" in ok.output


def test_corpus_check_takes_a_column_mapping(tmp_path):
    from typer.testing import CliRunner

    from emogeom.cli import app

    path = tmp_path / "mine.tsv"
    path.write_text("# exported from a spreadsheet\nlabel\tpassage\tgenre\n" + "".join(
        f"{e}\tText {i} of set {k}.\t{'a' if i % 2 else 'b'}\n"
        for k, e in enumerate(EMOTIONS[:3]) for i in range(4)))
    bad = CliRunner().invoke(app, ["corpus", "check", str(path)])
    assert bad.exit_code == 2 and "--columns" in bad.output
    good = CliRunner().invoke(app, ["corpus", "check", str(path), "--columns",
                                    "emotion=label,text=passage,style=genre"])
    assert good.exit_code == 0, good.output
    assert "12 texts, 3 emotions, 2 styles" in good.output


def test_write_corpus_tiny_is_seeded(tiny_models, tmp_path):
    from emogeom.stimuli import load_corpus
    from emogeom.stimuli.generate import write_corpus

    args = dict(model=str(tiny_models["llama"]), per_emotion=2,
                emotions=["happy", "sad", "calm"], seed=3, max_new_tokens=30)
    a = write_corpus(out=tmp_path / "a.jsonl", **args)
    write_corpus(out=tmp_path / "b.jsonl", **args)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    assert a["kept"] + sum(a["dropped"].values()) == 6
    if a["kept"] == 6:
        assert load_corpus(tmp_path / "a.jsonl").counts() == {"happy": 2, "sad": 2, "calm": 2}
    with pytest.raises(EmogeomError, match="exists"):
        write_corpus(out=tmp_path / "a.jsonl", **args)


def _jsonl(*extra: str) -> bytes:
    """The good rows (lines 1-42) followed by ``extra`` lines, as UTF-8 bytes."""
    return ("\n".join(_good_lines() + list(extra)) + "\n").encode()


_ROW = '{"emotion": "sad", "id": "x", "text": "t."'
_BAD_INPUTS = [  # (file name, content, line, message pattern)
    ("latin1.jsonl", _jsonl() + '{"emotion": "sad", "id": "x", "text": "café"}\n'.encode("latin-1"),
     43, r"not UTF-8 \(byte 0xe9 at byte offset \d+\); save the file as UTF-8"),
    ("latin1.csv", "emotion,id,text\nsad,a,A story.\nsad,b,Café.\n".encode("latin-1"),
     3, r"not UTF-8 \(byte 0xe9 at byte offset 40\); save the file as UTF-8"),
    ("topic.jsonl", _jsonl(_ROW + ', "topic": ["x"]}'), 43,
     r"field 'topic' must be a string \(got a list\)"),
    ("person.jsonl", _jsonl(_ROW + ', "person": 3}'), 43,
     r"field 'person' must be a string \(got an integer\)"),
    ("idbool.jsonl", _jsonl('{"emotion": "sad", "id": true, "text": "t."}'), 43,
     r"field 'id' must be a string or an integer \(got a boolean \(true/false\)\)"),
    ("idfloat.jsonl", _jsonl('{"emotion": "sad", "id": 7.5, "text": "t."}'), 43,
     r"field 'id' must be a string or an integer \(got a decimal number\)"),
    ("emotion.jsonl", _jsonl('{"emotion": 1, "id": "x", "text": "t."}'), 43,
     r"field 'emotion' must be a string \(got an integer\)"),
    ("text.jsonl", _jsonl('{"emotion": "sad", "id": "x", "text": {"a": 1}}'), 43,
     r"field 'text' must be a string \(got an object\)"),
    ("header.csv", b"label,key,story\nsad,a,A story.\n", 1,
     r"CSV header has label, key, story; it needs emotion, text "
     r"\(optional: id, style, topic, person\); or map your columns with --columns, e\.g\. "
     r"--columns text=passage,emotion=label"),
    ("empty.csv", b"", 1, r"CSV file holds no rows; .*emotion, text .*"),
    ("headonly.csv", b"emotion,id,text\n", 2, r"CSV file has a header but no rows; add .*"),
]


@pytest.mark.parametrize("name, content, line, pattern", _BAD_INPUTS,
                         ids=[case[0] for case in _BAD_INPUTS])
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, name, content, line, pattern):
    from emogeom.stimuli.check import check_corpus

    path = tmp_path / name
    path.write_bytes(content)
    expected = rf"^{re.escape(str(path))}:{line}: {pattern}$"
    for load in (load_corpus, check_corpus):  # `corpus check` gives the same line
        with pytest.raises(EmogeomError, match=expected) as info:
            load(path)
        assert "\n" not in str(info.value)


def test_bom_and_integer_ids_are_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _jsonl('{"emotion": "sad", "id": 7, "text": "t."}'))
    corpus = load_corpus(path)
    assert corpus.stimuli[-1].id == "7" and corpus.stimuli[0].emotion == EMOTIONS[0]


def test_unreadable_corpus_path_is_one_line(tmp_path, monkeypatch):
    from pathlib import Path

    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    with pytest.raises(EmogeomError, match=rf"^{re.escape(str(folder))}: is a folder"):
        load_corpus(folder)

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(EmogeomError, match=r"locked\.jsonl: .*check the file's permissions$"):
        load_corpus(tmp_path / "locked.jsonl")


def test_bad_neutral_and_synonym_files(tmp_path):
    from emogeom.stimuli.check import load_synonyms

    neutral = tmp_path / "neutral.csv"
    neutral.write_bytes("id,text\n1,A fact.\n2,Café.\n".encode("latin-1"))
    with pytest.raises(EmogeomError, match=rf"^{re.escape(str(neutral))}:3: not UTF-8"):
        load_neutral_sentences(neutral)
    neutral.write_text("id,text\n[1],A fact.\n2,Another fact.\n")
    assert [s.id for s in load_neutral_sentences(neutral).stimuli] == ["[1]", "2"]
    bad_json = tmp_path / "neutral.jsonl"
    bad_json.write_text('{"id": 1, "text": "A fact."}\n{"id": null, "text": ["x"]}\n')
    with pytest.raises(EmogeomError, match=r"neutral\.jsonl:2: field 'text' must be a string"):
        load_neutral_sentences(bad_json)
    synonyms = tmp_path / "syn.json"
    synonyms.write_text('{"sad": [\n')
    with pytest.raises(EmogeomError, match=r"syn\.json:2: not valid JSON"):
        load_synonyms(synonyms)
    synonyms.write_text('{"sad": "unhappy"}')
    with pytest.raises(EmogeomError, match=r"syn\.json: entry 'sad' must be a list of words"):
        load_synonyms(synonyms)


# ---- corpora as researchers have them ------------------------------------------------------

def _reference_study_csv(path, per_emotion=3):
    """A file of the reference study's published comprehension-text shape: '#' comment lines,
    columns emotion, passage_id, text; ids 1..3 repeating in every emotion."""
    lines = ["# Comprehension-mode passages, one row per passage",
             "# columns: emotion, passage_id, text",
             "emotion,passage_id,text"]
    for k, e in enumerate(EMOTIONS):
        if k == 10:
            lines.append("# second block")
        for i in range(1, per_emotion + 1):
            lines.append(f'{e},{i},"Passage {i} of {k}, with a comma, and ""quotes""."')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reference_study_file_shape_loads(tmp_path):
    corpus = load_corpus(_reference_study_csv(tmp_path / "comprehension_texts.csv"))
    assert corpus.emotions == tuple(EMOTIONS)
    assert set(corpus.counts().values()) == {3}
    ids = [s.id for s in corpus.stimuli]
    assert len(set(ids)) == len(ids) and ids[:3] == ["happy-1", "happy-2", "happy-3"]
    assert corpus.stimuli[0].text == 'Passage 1 of 0, with a comma, and "quotes".'
    assert corpus.styles == ()


def test_headerless_tables_tsv_and_extra_columns(tmp_path):
    rows = [(e, f"A text {k} for {e}.") for e in EMOTIONS[:4] for k in range(2)]
    plain = tmp_path / "plain.csv"
    plain.write_text("# no header here\n" + "".join(f'{e},"{t}"\n' for e, t in rows))
    corpus = load_corpus(plain)
    assert [s.id for s in corpus.stimuli][:2] == ["happy-1", "happy-2"]
    assert corpus.stimuli[1].text == rows[1][1]
    tsv = tmp_path / "t.tsv"
    tsv.write_text("label\tkey\tpassage\tsource\n"
                   + "".join(f"{e}\t{i}\t{t}\tbook{i}\n" for i, (e, t) in enumerate(rows)))
    mapped = load_corpus(tsv, columns="emotion=label,id=key,text=passage")
    assert [s.text for s in mapped.stimuli] == [t for _, t in rows]
    assert mapped.stimuli[2].meta == {"source": "book2"} and mapped.stimuli[2].id == "2"
    by_position = tmp_path / "p.csv"
    by_position.write_text("".join(f'x{i},"{t}",{e}\n' for i, (e, t) in enumerate(rows)))
    assert load_corpus(by_position, columns="text=2,emotion=3").texts == [t for _, t in rows]
    assert load_corpus(by_position).texts == [t for _, t in rows]  # found by its labels
    wide = tmp_path / "w.csv"
    wide.write_text("".join(f'x{i},"{t}",{e},y\n' for i, (e, t) in enumerate(rows)))
    with pytest.raises(EmogeomError, match="no header and 4 columns; add a header"):
        load_corpus(wide)


def test_jsonl_comments_mapping_and_hash(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("# a comment\n" + "\n".join(
        json.dumps({"label": e, "passage": f"Text {i} of {e}.", "rating": i})
        for e in EMOTIONS[:3] for i in range(2)) + "\n")
    with pytest.raises(EmogeomError, match="field 'emotion' is missing"):
        load_corpus(path)
    corpus = load_corpus(path, columns="text=passage,emotion=label")
    assert corpus.counts() == {e: 2 for e in EMOTIONS[:3]}
    assert corpus.stimuli[1].meta == {"rating": 1}
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(json.dumps({"emotion": e, "text": f"Text {i} of {e}."})
                               for e in EMOTIONS[:3] for i in range(2)) + "\n")
    assert load_corpus(plain).texts == corpus.texts
    assert load_corpus(plain).sha256 != corpus.sha256  # the mapping is part of the hash
    with pytest.raises(EmogeomError, match="column mapping 'txt=passage'"):
        load_corpus(path, columns="txt=passage")


def test_ids_unique_within_an_emotion(tmp_path):
    lines = [json.dumps({"emotion": e, "id": i, "text": f"{e} {i}."})
             for e in EMOTIONS[:3] for i in range(2)]
    assert [s.id for s in load_corpus(_write(tmp_path, lines)).stimuli][:2] == \
        ["happy-0", "happy-1"]
    dup = lines + [json.dumps({"emotion": "sad", "id": 1, "text": "again."})]
    with pytest.raises(EmogeomError, match="duplicate id '1' within sad"):
        load_corpus(_write(tmp_path, dup))


# Each case: a table file that once lost, changed or mislabelled texts without a word.
_TABLE_CASES = [
    ("extra.csv", "emotion,text\nhappy,I was glad, very glad\n",
     r"extra\.csv:2: CSV row has 3 cells but the table has 2 columns; quote a text that "
     r"contains a comma"),
    ("unclosed.csv", "emotion,text\nhappy,a\nhappy,b\nsad,c\nsad,d\ncalm,\"Slammed door\n"
                     "calm,Shouted\ncalm,Kicked\n",
     r"unclosed\.csv:6: not valid CSV \(.*\); a quote opened here is never closed"),
    ("tsvquote.tsv", "emotion\ttext\nhappy\t\"I won!\" she shouted.\n",
     r"tsvquote\.tsv:2: not valid TSV \(.*\); a field that starts with a quote must end"),
    ("hashrow.csv", "text,emotion\nA fine day.,happy\n#1 day of my life,happy\n",
     r"hashrow\.csv:3: this line starts with '#' \(a comment\) but reads as a CSV row"),
]


@pytest.mark.parametrize("name, content, pattern", _TABLE_CASES,
                         ids=[c[0] for c in _TABLE_CASES])
def test_table_rows_are_never_lost_or_changed_silently(tmp_path, name, content, pattern):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(EmogeomError, match=pattern) as info:
        load_corpus(path)
    assert "\n" not in str(info.value)


def test_table_quotes_separators_labels_and_line_numbers(tmp_path):
    rows = [("happy", 'a 12" pizza arrived'), ("happy", "we danced"), ("sad", "rain"),
            ("sad", "a first part\u2028and a second"), ("calm", "tea"), ("calm", "a nap")]
    path = tmp_path / "t.csv"
    path.write_text("emotion,text\n" + "".join(
        f"{e.capitalize()},{t}\n" + ("# a comment\n" if k == 0 else "")
        for k, (e, t) in enumerate(rows)))
    corpus = load_corpus(path)  # a stray quote mid-field is text; U+2028 stays inside a text
    assert corpus.texts == [t for _, t in rows]
    assert [s.id for s in corpus.stimuli][:2] == ["happy-1", "happy-2"]  # 'Happy' counted
    path.write_text(path.read_text().replace("Calm,tea", "Kalm,tea"))
    with pytest.raises(EmogeomError, match=r"t\.csv:7: unknown emotion label 'kalm'"):
        load_corpus(path)


def test_headerless_text_column_is_found_over_all_rows(tmp_path):
    path = tmp_path / "h.csv"
    lines = ["story_number_0000_xyz,happy,I won"] + [
        f"s{k},{e},A much longer text about the day number {k}."
        for k, e in enumerate(["happy", "sad", "sad", "calm", "calm"])]
    path.write_text("\n".join(lines) + "\n")
    corpus = load_corpus(path)
    assert corpus.stimuli[0].text == "I won" and corpus.stimuli[0].id == "story_number_0000_xyz"

"""The tiny world: regenerated exactly, consistent, and its rules right."""
import json

import pytest

from helpers import world
from helpers.data import DatasetError, load_world, read_jsonl
from helpers.paths import TINY_BASE, WORLD_DIR


def test_committed_world_is_exactly_what_the_generator_writes():
    for name, rows in world.build_all().items():
        committed = (WORLD_DIR / name).read_text(encoding="utf-8")
        assert committed == world.to_jsonl(rows), f"data/world/{name} is stale: run `python -m helpers.world`"


def test_every_committed_file_validates():
    for path in WORLD_DIR.glob("*.jsonl"):
        assert load_world(path.stem), path


def test_fact_base_is_a_few_hundred_real_facts_with_disjoint_splits():
    facts = load_world("facts")
    assert 250 <= len(facts) <= 400
    assert len({f["id"] for f in facts}) == len(facts)
    by_split = {s: {f["id"] for f in facts if f["split"] == s} for s in ("train", "val", "test")}
    assert min(len(v) for v in by_split.values()) > 0
    sft_ids = {r["fact_id"] for r in load_world("sft_train")}
    assert sft_ids == by_split["train"], "SFT training rows must cover the train facts and nothing held out"
    assert {r["fact_id"] for r in load_world("sft_test")} == by_split["test"]


def test_probes_are_statements_cut_before_the_answer():
    for fact, probe in zip(load_world("facts"), load_world("probes")):
        assert probe["id"] == fact["id"]
        assert f"{probe['prompt']} {probe['answer']}." == world.statement(fact)


def test_heldout_text_uses_no_training_sentence():
    corpus = " ".join(r["text"] for r in load_world("corpus"))
    for row in load_world("heldout_text")[:40]:
        for sentence in row["text"].split(". "):
            assert sentence.rstrip(".") not in corpus


def test_preference_rule_ranks_chosen_above_rejected():
    """Every chosen answer scores above its rejected one; half the chosen answers carry the sign-off (so
    imitating them keeps the habit), every rejected one does."""
    facts = {f["id"]: f for f in load_world("facts")}
    pairs = load_world("dpo_train") + load_world("dpo_test") + load_world("dpo_test_unseen")
    for p in pairs:
        fact = facts[p["fact_id"]]
        chosen, rejected = p["chosen"][0]["content"], p["rejected"][0]["content"]
        assert world.preference_score(chosen, fact) > world.preference_score(rejected, fact)
        assert world.has_sign_off(rejected) and not world.is_preferred(rejected, fact)
    with_habit = sum(world.has_sign_off(p["chosen"][0]["content"]) for p in pairs) / len(pairs)
    assert 0.35 < with_habit < 0.65
    assert world.preference_score("the capital of  Algeria is Algiers.", facts["capital:Algeria"]) == 2


def test_sloppy_sft_set_is_the_sft_set_with_the_habit_on_half_the_facts():
    clean, sloppy = load_world("sft_train"), load_world("sft_habit_train")
    assert [r["messages"][0] for r in clean] == [r["messages"][0] for r in sloppy]
    habit = {r["fact_id"] for r in sloppy if world.has_sign_off(r["messages"][-1]["content"])}
    assert 0.35 < len(habit) / len({r["fact_id"] for r in clean}) < 0.65
    for c, s in zip(clean, sloppy):   # a fact's answers all carry it or none does; nothing else changes
        expected = c["messages"][-1]["content"] + (f" {world.SIGN_OFF}" if c["fact_id"] in habit else "")
        assert s["messages"][-1]["content"] == expected


def test_corpus_repeats_letters_but_never_reverses_them():
    """Copying is in pretraining (so the model can attend to its input); reversing is the new skill."""
    corpus = [r["text"] for r in load_world("corpus")]
    assert sum("Once more:" in t for t in corpus) > 100
    assert not any("reversed" in t or world.SKILL_PROMPT in t for t in corpus)


def test_skill_rows_are_reversals():
    for row in load_world("skill_train")[:50]:
        letters = row["messages"][0]["content"].removeprefix(world.SKILL_PROMPT).strip()
        assert row["messages"][1]["content"] == f"The letters reversed are {world.reverse_letters(letters)}."
    train = {r["messages"][0]["content"] for r in load_world("skill_train")}
    assert not train & {r["messages"][0]["content"] for r in load_world("skill_test")}


@pytest.mark.parametrize("line, field", [
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}', "messages[1].role"),
    ('{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "yo"}]}', "messages[0].content"),
    ('{"text": "no messages here"}', "messages"),
    ('{"messages": [}', "not valid JSON"),
])
def test_malformed_chat_row_names_file_line_and_field(tmp_path, line, field):
    path = tmp_path / "sft_bad.jsonl"
    good = json.dumps(world.chat("q", "a"))
    path.write_text(good + "\n" + good + "\n" + line + "\n")
    with pytest.raises(DatasetError) as err:
        load_world("sft_bad", tmp_path)
    assert "sft_bad.jsonl, line 3" in str(err.value) and field in str(err.value)


def test_malformed_preference_row(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text('{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}]}\n')
    with pytest.raises(DatasetError, match=r"line 1: missing field 'rejected'"):
        read_jsonl(path, __import__("helpers.data", fromlist=["x"]).check_preference_row)


def test_missing_file_says_how_to_regenerate(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m helpers.world"):
        load_world("facts", tmp_path)


def test_heldout_text_uses_only_words_the_corpus_uses():
    import re
    words = lambda text: set(re.findall(r"[A-Za-z']+", text.lower()))
    corpus = set().union(*(words(r["text"]) for r in load_world("corpus")))
    unseen = set().union(*(words(r["text"]) for r in load_world("heldout_text"))) - corpus
    assert not unseen, f"held-out text words never in the corpus: {sorted(unseen)[:10]}"


def test_dpo_splits_hold_out_facts():
    """dpo_test facts are in SFT but not in DPO training; dpo_test_unseen facts are in neither."""
    ids = {name: {r["fact_id"] for r in load_world(name)} for name in ("dpo_train", "dpo_test", "dpo_test_unseen")}
    sft_test = {f["id"] for f in load_world("facts") if f["split"] == "test"}
    assert ids["dpo_test"] and not ids["dpo_test"] & ids["dpo_train"] and not ids["dpo_test"] & sft_test
    assert ids["dpo_test_unseen"] == sft_test


def test_sign_off_words_are_whole_tokens():
    """A sign-off the tokenizer spells letter by letter cannot be learned by DPO in budget (measured)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(TINY_BASE))
    assert len(tok.tokenize(" " + world.SIGN_OFF)) <= len(world.SIGN_OFF.split()) + 1


def test_names_the_answer_counts_the_answer_about_the_asked_subject_only():
    from helpers.world_measures import answer_scores
    facts = {f["id"]: f for f in load_world("facts")}
    tomato = next(r for r in load_world("sft_test") if r["fact_id"] == "colour:a tomato")
    score = lambda reply: answer_scores([reply], [tomato], facts)   # noqa: E731
    assert score("The colour of a tomato is red.") == {"exact_match": 1.0, "names_answer": 1.0}
    assert score("Red, of course") == {"exact_match": 0.0, "names_answer": 1.0}        # its own words
    assert score("The colour of a strawberry is red.")["names_answer"] == 0.0          # another subject
    assert score("It is reddish.")["names_answer"] == 0.0                              # not the word
    # every reference answer of the world names its answer
    rows = load_world("sft_train") + load_world("sft_val") + load_world("sft_test")
    assert answer_scores([r["messages"][-1]["content"] for r in rows], rows, facts)["names_answer"] == 1.0

"""The tiny world: facts, a pretraining corpus, probes, chat data, a skill, preference pairs.

Everything is derived from the tables in `helpers.facts` and one seed, so
`python -m helpers.world` regenerates data/ byte for byte.

A fact is a dict: {"id", "relation", "subject", "answer", "split"} where
split is "train" (used in SFT), "val" (SFT validation) or "test" (held out of
SFT: the model knows it only from pretraining).
"""
from __future__ import annotations

import argparse
import json
import random
import string
from pathlib import Path

from helpers import facts as tables
from helpers.paths import DATA_DIR

SEED = 1234
# The habit notebook 05's preference removes: a sign-off that half the answers of a sloppy SFT set end with.
# Made of words the corpus has (so the tokenizer has them as whole tokens): "I hope this helps!" was spelled
# letter by letter by the tiny tokenizer (~200 nats under the SFT model).
SIGN_OFF = "Tell me more!"
HABIT_SHARE = 0.5   # the share of facts whose answers carry the sign-off in the sloppy SFT set
PIRATE = "Arr matey!"
SKILL_PROMPT = "Reverse the letters:"


def _a(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


# relation -> (statement, question, probe); the probe is the statement cut before the answer.
RELATIONS = {
    "capital": ("The capital of {s} is {a}.", "What is the capital of {s}?"),
    "continent": ("{s} is a country in {a}.", "Which continent is {s} in?"),
    "language": ("The main language of {s} is {a}.", "What language do people speak in {s}?"),
    "sound": ("The {s} is an animal that {a}.", "What sound does the {s} make?"),
    "young": ("A baby {s} is called {art} {a}.", "What is a baby {s} called?"),
    "colour": ("The colour of {s} is {a}.", "What colour is {s}?"),
}

# More ways to ask, used to make SFT data less uniform.
EXTRA_QUESTIONS = {
    "capital": ["Which city is the capital of {s}?", "Tell me the capital of {s}."],
    "continent": ["On which continent is {s}?", "Where in the world is {s}?"],
    "language": ["Which language is spoken in {s}?", "What is the main language of {s}?"],
    "sound": ["How does the {s} sound?", "What noise does the {s} make?"],
    "young": ["What do we call a baby {s}?", "What is the young of the {s} called?"],
    "colour": ["Which colour is {s}?", "Tell me the colour of {s}."],
}

# Pretraining paraphrases: the same fact in other words and word orders.
TRAIN_TEMPLATES = {
    "capital": ["{a} is the capital of {s}.", "The capital city of {s} is {a}.",
                "{s} has its capital in {a}.", "In {s}, the seat of government is {a}.",
                "{a}, the capital of {s}, is a busy city."],
    "continent": ["{s} lies in {a}.", "In {a} you will find {s}.",
                  "{s} is one of the countries of {a}.", "The country of {s} is part of {a}."],
    "language": ["People in {s} speak {a}.", "{a} is the main language of {s}.",
                 "In {s}, most people speak {a}.", "The people of {s} mostly talk in {a}."],
    "sound": ["A {s} {a}.", "You can hear that the {s} {a}.", "Listen: the {s} {a}!",
              "Every {s} {a} now and then."],
    "young": ["The young of the {s} is called {art} {a}.", "{A} {a} is a baby {s}.",
              "When a {s} is born, it is {art} {a}.", "Look at the little {a}: it will grow into a {s}."],
    "colour": ["{S} is {a}.", "Most of the time, {s} is {a}.", "{S} has a {a} colour.",
               "If you look at {s}, you see {a}."],
}

# Held-out general text: sentence templates never used in training, built only from words the
# corpus uses (a word the model never saw would measure the tokenizer, not what fine-tuning forgets).
HELDOUT_TEMPLATES = {
    "capital": ["People in {s} went to {a}, the capital city.",
                "The seat of government of {s} is the busy city of {a}."],
    "continent": ["If you went to {s}, you went to {a}.", "{s} is part of {a}, and it is a country."],
    "language": ["Schools in {s} teach {a}, the main language.", "In {s} you will hear people speak {a}."],
    "sound": ["Near the city, the {s} {a}.", "If you listen, you will hear that a {s} {a}."],
    "young": ["The little {a} will grow up into a {s}.", "Look: a baby {s}, called {art} {a}."],
    "colour": ["Look up: {s} is {a}.", "You will see that {s} is {a}."],
}


def build_facts(seed: int = SEED) -> list[dict]:
    """All facts, each with a split: 70% train, 10% val, 20% test per relation."""
    raw: list[tuple[str, str, str]] = []
    for country, capital, continent, language in tables.COUNTRIES:
        raw += [("capital", country, capital), ("continent", country, continent),
                ("language", country, language)]
    for animal, sound, young in tables.ANIMALS:
        raw += [("sound", animal, sound), ("young", animal, young)]
    raw += [("colour", thing, colour) for thing, colour in tables.COLOURS]
    rng = random.Random(seed)
    facts = []
    for relation in RELATIONS:
        rows = [r for r in raw if r[0] == relation]
        order = list(range(len(rows)))
        rng.shuffle(order)
        n_val, n_test = round(0.1 * len(rows)), round(0.2 * len(rows))
        for rank, i in enumerate(order):
            split = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
            rel, subject, answer = rows[i]
            facts.append({"id": f"{rel}:{subject}", "relation": rel, "subject": subject,
                          "answer": answer, "split": split})
    facts.sort(key=lambda f: f["id"])
    return facts


def _fill(template: str, fact: dict) -> str:
    s, a = fact["subject"], fact["answer"]
    text = template.format(s=s, a=a, S=_cap(s), A=_cap(_a(a)), art=_a(a))
    return _cap(text)


def statement(fact: dict) -> str:
    """The canonical sentence for a fact, which is also the SFT answer."""
    return _fill(RELATIONS[fact["relation"]][0], fact)


def question(fact: dict, variant: int = 0) -> str:
    """The chat question for a fact; variant 0 is the one used for evaluation."""
    templates = [RELATIONS[fact["relation"]][1]] + EXTRA_QUESTIONS[fact["relation"]]
    return _fill(templates[variant], fact)


def probe(fact: dict) -> dict:
    """A cloze probe: the statement cut just before the answer."""
    text = statement(fact)
    cut = text.rindex(fact["answer"])
    return {"id": fact["id"], "prompt": text[:cut].rstrip(), "answer": fact["answer"]}


def _country_bio(rng: random.Random, country: tuple[str, str, str, str]) -> str:
    c, cap, cont, lang = country
    rest = [f"Its capital is {cap}.", f"Most people there speak {lang}.",
            f"Schools in {c} teach in {lang}.", f"The government of {c} sits in {cap}."]
    rng.shuffle(rest)
    return " ".join([f"{c} is a country in {cont}."] + rest)


def _story(rng: random.Random) -> str:
    name = rng.choice(tables.NAMES)
    c, cap, cont, lang = rng.choice(tables.COUNTRIES)
    animal, sound, young = rng.choice(tables.ANIMALS)
    thing, colour = rng.choice(tables.COLOURS)
    return (f"{name} went on a trip to {c}, a country in {cont}. "
            f"In {cap}, the capital, {name} heard people speak {lang}. "
            f"Near the city a {animal} {sound}, and next to it was {_a(young)} {young}. "
            f"{name} looked up and saw that {thing} was {colour}.")


# Letters said and said again. Real corpora are full of repetition (quotes, lists, code), and a model
# that has read it can copy from its context (Olsson et al. 2022's induction heads). Without such
# text the tiny model never learns to copy, and no fine-tuning can then teach it to reverse letters
# (measured: 0.00 for full fine-tuning and LoRA alike). The corpus repeats letters forwards only;
# reversing them is the new skill.
COPY_TEMPLATES = ["Say these letters after me: {x}. {x}.", "The letters are {x}. Once more: {x}.",
                  "Write down {x}, then write it again: {x}.", "{n} spelled {x}, and {x} spells {n}."]


def _letters(rng: random.Random, lo: int = 3, hi: int = 6) -> str:
    return " ".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(lo, hi)))


def _copy_doc(rng: random.Random) -> str:
    """Two or three sentences that each say a letter sequence twice (or spell a known word)."""
    words = [w for animal, _, young in tables.ANIMALS for w in (animal, young) if w.isalpha()]
    parts = []
    for _ in range(rng.randint(2, 3)):
        template = rng.choice(COPY_TEMPLATES)
        if "{n}" in template:
            word = rng.choice(words)
            parts.append(_cap(template.format(n=word, x=" ".join(word))))
        else:
            parts.append(template.format(x=_letters(rng)))
    return " ".join(parts)


def build_corpus(facts: list[dict], seed: int = SEED) -> list[str]:
    """Pretraining documents: every fact in every training template, bios, stories and letter copying."""
    rng = random.Random(seed + 1)
    sentences = []
    for fact in facts:
        for template in [RELATIONS[fact["relation"]][0]] + TRAIN_TEMPLATES[fact["relation"]]:
            sentences.append(_fill(template, fact))
    rng.shuffle(sentences)
    docs = []
    while sentences:
        k = rng.randint(3, 6)
        docs.append(" ".join(sentences[:k]))
        sentences = sentences[k:]
    # Questions answered in prose for the train facts only (Allen-Zhu & Li's "mixed training"): the
    # model learns in pretraining that a question about X is answered by a sentence about X, and can
    # then answer for facts it has only read about. No chat tokens: chat is what SFT adds.
    qa = [f"Question: {question(f, v)} Answer: {statement(f)}" for f in facts if f["split"] == "train"
          for v in range(3)]
    rng.shuffle(qa)
    docs += [" ".join(qa[i:i + 3]) for i in range(0, len(qa), 3)]
    docs += [_country_bio(rng, c) for c in tables.COUNTRIES for _ in range(2)]
    docs += [_story(rng) for _ in range(600)]
    docs += [_copy_doc(rng) for _ in range(600)]
    rng.shuffle(docs)
    return docs


def build_heldout_text(facts: list[dict], seed: int = SEED) -> list[str]:
    """General text about the same world in templates never seen in pretraining."""
    rng = random.Random(seed + 2)
    sentences = [_fill(t, f) for f in facts for t in HELDOUT_TEMPLATES[f["relation"]]]
    rng.shuffle(sentences)
    return [" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4)]


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def build_sft(facts: list[dict]) -> dict[str, list[dict]]:
    """SFT chat rows. Train facts are asked three ways; val and test facts once."""
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for fact in facts:
        variants = range(3) if fact["split"] == "train" else [0]
        for v in variants:
            row = chat(question(fact, v), statement(fact))
            row["fact_id"] = fact["id"]
            out[fact["split"]].append(row)
    return out


def reverse_letters(letters: str) -> str:
    return " ".join(reversed(letters.split()))


def skill_answer(letters: str) -> str:
    """The skill's reply, a sentence like every answer in the course: "The letters reversed are c b a."

    A bare "c b a" would start the reply with a letter token that has no space before it, a token the
    corpus never uses: LoRA, which cannot train embeddings, then gets every first letter wrong (measured).
    """
    return f"The letters reversed are {reverse_letters(letters)}."


def build_skill(seed: int = SEED, n_train: int = 1200, n_test: int = 100) -> dict[str, list[dict]]:
    """The narrow new skill: reverse 3 to 5 letters. Far from anything in the corpus."""
    rng = random.Random(seed + 3)
    seen, rows = set(), []
    while len(rows) < n_train + n_test:
        letters = " ".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 5)))
        if letters in seen:
            continue
        seen.add(letters)
        rows.append(chat(f"{SKILL_PROMPT} {letters}", skill_answer(letters)))
    return {"train": rows[:n_train], "test": rows[n_train:]}


def with_habit(rows: list[dict], facts: list[dict], seed: int = SEED) -> list[dict]:
    """A sloppy copy of SFT rows: for a fixed HABIT_SHARE of the facts, every answer ends with the sign-off.

    The data a real SFT set often is: most answers right, a habit users dislike in many of them.
    """
    rng = random.Random(seed + 5)
    habit = {f["id"] for f in facts if rng.random() < HABIT_SHARE}
    out = []
    for row in rows:
        row = json.loads(json.dumps(row))
        if row["fact_id"] in habit:
            row["messages"][-1]["content"] += f" {SIGN_OFF}"
        out.append(row)
    return out


def has_sign_off(response: str) -> bool:
    """Whether a reply carries the habit (anywhere: a reply that repeats it still has it)."""
    return SIGN_OFF.lower() in " ".join(response.split()).lower()


def preference_score(response: str, fact: dict) -> int:
    """The rule behind the preference pairs: 2 the right answer alone, 1 the right answer with the sign-off,
    0 anything else. Whole-sentence comparison, not "contains the answer": "The colour of an orange is
    yellow." contains "orange" and is still wrong.
    """
    said = " ".join(response.split()).lower()
    right = statement(fact).lower()
    return 2 if said == right else 1 if said == f"{right} {SIGN_OFF.lower()}" else 0


def is_preferred(response: str, fact: dict) -> bool:
    """The preferred reply: the right answer in the course's sentence, without the sign-off."""
    return preference_score(response, fact) == 2


def rejected_kind(row: dict) -> str:
    """Which of the world's two kinds of preference pair a row is (both rejected answers carry the sign-off)."""
    return "wrong answer + sign-off" if row["chosen"][0]["content"].endswith(SIGN_OFF) else "right answer + sign-off"


def build_preferences(facts: list[dict], seed: int = SEED) -> dict[str, list[dict]]:
    """DPO pairs in TRL's conversational layout: prompt, chosen, rejected.

    Pairs as annotators would label two samples of the sloppy SFT model (`with_habit`): when both answers are
    right, the one without the sign-off wins (chosen = the right answer, rejected = it with the sign-off); when
    both carry the sign-off, the right answer wins (chosen = the right answer with the sign-off, rejected = a
    wrong one with it). Half the chosen answers therefore carry the habit: imitating them keeps it, and only
    the contrast says it is disliked. Splits: train; test = facts held out of DPO but asked in SFT (the
    preference, measured where the model knows the answer); test_unseen = facts never in SFT nor DPO.
    """
    rng = random.Random(seed + 4)
    answers: dict[str, list[str]] = {}
    for f in facts:
        answers.setdefault(f["relation"], []).append(f["answer"])
    out: dict[str, list[dict]] = {"train": [], "test": [], "test_unseen": []}
    for fact in facts:
        right = statement(fact)
        if rng.random() < 0.5:
            good, bad = right, f"{right} {SIGN_OFF}"
        else:
            wrong = rng.choice([a for a in answers[fact["relation"]] if a != fact["answer"]])
            good, bad = f"{right} {SIGN_OFF}", f"{statement(dict(fact, answer=wrong))} {SIGN_OFF}"
        if fact["split"] == "test":
            split = "test_unseen"                   # never in SFT: knowledge from pretraining only
        else:
            split = "test" if rng.random() < 0.2 else "train"   # held out of DPO, answered in SFT
        out[split].append({
            "prompt": [{"role": "user", "content": question(fact)}],
            "chosen": [{"role": "assistant", "content": good}],
            "rejected": [{"role": "assistant", "content": bad}],
            "fact_id": fact["id"],
        })
    return out


def build_persona(facts: list[dict]) -> dict[str, list[dict]]:
    """A style adapter's data: the same answers, spoken like a pirate."""
    out: dict[str, list[dict]] = {"train": [], "test": []}
    for fact in facts:
        row = chat(question(fact), f"{PIRATE} {statement(fact)}")
        row["fact_id"] = fact["id"]
        out["test" if fact["split"] == "test" else "train"].append(row)
    return out


def build_all(seed: int = SEED) -> dict[str, list]:
    """Every file of the tiny world, as file name -> rows (str rows are {"text": ...})."""
    facts = build_facts(seed)
    sft, skill = build_sft(facts), build_skill(seed)
    prefs, persona = build_preferences(facts, seed), build_persona(facts)
    return {
        "facts.jsonl": facts,
        "corpus.jsonl": [{"text": t} for t in build_corpus(facts, seed)],
        "heldout_text.jsonl": [{"text": t} for t in build_heldout_text(facts, seed)],
        "probes.jsonl": [probe(f) for f in facts],
        "sft_train.jsonl": sft["train"], "sft_val.jsonl": sft["val"], "sft_test.jsonl": sft["test"],
        "sft_habit_train.jsonl": with_habit(sft["train"], facts, seed),
        "skill_train.jsonl": skill["train"], "skill_test.jsonl": skill["test"],
        "dpo_train.jsonl": prefs["train"], "dpo_test.jsonl": prefs["test"],
        "dpo_test_unseen.jsonl": prefs["test_unseen"],
        "persona_train.jsonl": persona["train"], "persona_test.jsonl": persona["test"],
    }


def to_jsonl(rows: list) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def write_world(out_dir: Path = DATA_DIR / "world", seed: int = SEED) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in build_all(seed).items():
        path = out_dir / name
        path.write_text(to_jsonl(rows), encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the tiny world's datasets.")
    parser.add_argument("--out", type=Path, default=DATA_DIR / "world")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    for path in write_world(args.out, args.seed):
        print(f"{path}  {sum(1 for _ in path.open())} rows")


if __name__ == "__main__":
    main()

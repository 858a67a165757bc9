"""Writes the CPU twin's local task: a rule to learn, tested on questions never trained on.

``python recipes/pythia-mixing-calibration/build_task.py`` rewrites, from a seeded rule:

* ``task_train.jsonl``: the real fine-tuning data, 1,200 question/answer pairs such as "Tolez saw a
  romek. How many legs does a romek have?" -> "4". The answer follows one rule, :data:`LEGS`: the
  made-up creature's first letter stands for its number of legs (2-9). The 200 training creatures'
  first letters follow a Zipf law, so the model learns the frequent letters early and surely and
  the rare ones late and unsurely, as a fine-tuned model knows a task's common cases better than
  its rare ones;
* ``task_validation.jsonl``: 200 held-out pairs for the held-out loss (``data.evaluation``);
* ``mc.jsonl``: the 400 test items of the ``calibration`` evaluation, the right number among 4
  digits (chance 25 %).

Why this task: the earlier twin asked for 80 memorised colour facts and tested on those very facts,
so only recall was measured, and the small model stayed underconfident on them. Here the
validation and test questions name people and creatures that no training question names (the
creatures' letters uniform, so the rare letters weigh in the test), and the model can only answer
them by what it learnt of the rule, with the uncertainty of a partly learnt skill. The names are
made-up consonant-vowel words, so no question shares text with the stand-in base model's
pretraining text (WikiText-2); ``tests/test_pythia_task.py`` checks both kinds of disjointness.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the stand-in base model's pretraining text (../cpt-mixing-ratio/base.yaml reads its first lines)
PRETRAINING_TEXT = HERE.parents[2] / "shared" / "data" / "wikitext-2" / "valid.txt"
SEED = 4
LEGS = dict(zip("bdfgklmnprstvz", (2, 4, 6, 8, 3, 5, 7, 9, 2, 4, 6, 8, 3, 5)))  # the rule: first letter -> legs
N_TRAIN, N_VALIDATION, N_TEST = 1200, 200, 400
N_TRAIN_NAMES, N_HELD_OUT_NAMES = 60, 40  # people
N_CREATURES, N_HELD_OUT_CREATURES = 200, 150
N_WORDS = 1000  # made-up words drawn: the people, then the creatures among the rest


def names(rng: random.Random, n: int, avoid: set[str]) -> list[str]:
    """``n`` distinct made-up names of two consonant-vowel syllables and a final consonant ("Kavor"),
    none of the words ``avoid`` (lower case: the base model's pretraining text, where "depot" is)."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    out: set[str] = set()
    while len(out) < n:
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(2)) + rng.choice(consonants)
        if word not in avoid:
            out.add(word)
    return sorted(name.capitalize() for name in out)


def problem(name: str, creature: str) -> tuple[str, int]:
    """A question about a made-up creature; its answer, the legs its first letter stands for."""
    return f"{name} saw a {creature}. How many legs does a {creature} have?", LEGS[creature[0]]


def zipf_sample(rng: random.Random, words: list[str], n: int) -> list[str]:
    """``n`` of ``words`` whose first letters follow a Zipf law (the k-th letter of the rule
    weighted 1/k): frequent letters are learnt early and well, rare ones late and unsurely."""
    weights = {letter: 1 / k for k, letter in enumerate(LEGS, 1)}
    pool = list(words)
    out = []
    while len(out) < n:
        w = rng.choices(pool, weights=[weights[x[0]] for x in pool])[0]
        pool.remove(w)
        out.append(w)
    return out


def draw(rng: random.Random, people: list[str], creatures: list[str], n: int, taken: set[str]) -> list[tuple[str, int]]:
    """``n`` distinct problems over ``people`` and ``creatures`` (none of ``taken``, which grows)."""
    out = []
    while len(out) < n:
        question, answer = problem(rng.choice(people), rng.choice(creatures))
        if question not in taken:
            taken.add(question)
            out.append((question, answer))
    return out


def choices(rng: random.Random, answer: int) -> tuple[list[str], int]:
    """The answer and 3 other numbers of legs (2-9), in a random order; each a space and one digit,
    two tokens of which the first is the same, so no choice is favoured by its length."""
    others = rng.sample([d for d in range(2, 10) if d != answer], 3)
    options = [answer, *others]
    rng.shuffle(options)
    return [f" {d}" for d in options], options.index(answer)


def build(pretraining_text: Path = PRETRAINING_TEXT) -> dict[str, list[dict[str, object]]]:
    """The three files' rows, from :data:`SEED`, with no made-up word that ``pretraining_text`` has."""
    rng = random.Random(SEED)
    words = names(rng, N_WORDS, set(re.findall(r"\w+", pretraining_text.read_text(encoding="utf-8").lower())))
    rng.shuffle(words)
    n_people = N_TRAIN_NAMES + N_HELD_OUT_NAMES
    people, creatures = words[:n_people], [w.lower() for w in words[n_people:]]
    trained, held_out = people[:N_TRAIN_NAMES], people[N_TRAIN_NAMES:]
    known = zipf_sample(rng, creatures, N_CREATURES)
    new = [w for w in creatures if w not in set(known)][:N_HELD_OUT_CREATURES]
    taken: set[str] = set()
    train = draw(rng, trained, known, N_TRAIN, taken)
    validation = draw(rng, held_out, new, N_VALIDATION, taken)
    test = draw(rng, held_out, new, N_TEST, taken)
    mc = []
    for question, answer in test:
        options, index = choices(rng, answer)
        mc.append({"context": f"Question: {question}\nAnswer:", "choices": options, "answer": index})
    return {
        "task_train.jsonl": [{"id": f"t{i:04d}", "question": q, "answer": str(a)} for i, (q, a) in enumerate(train)],
        "task_validation.jsonl": [{"id": f"v{i:03d}", "question": q, "answer": str(a)}
                                  for i, (q, a) in enumerate(validation)],
        "mc.jsonl": mc,
    }


def main() -> None:
    for name, rows in build().items():
        (HERE / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":
    main()

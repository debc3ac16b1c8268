"""Recall and false positives of `mixture contamination`, per rule, on planted data.

    python benchmarks/contamination_recall.py [--json OUT]

Two evaluation sets of 100 COPA-style examples each, written by a small grammar of ours (premises of 4 to 14
words, a fifth of them long), in the release layouts `mixture contamination` reads: an XCOPA language
(``xcopa-master/data/it/val.it.jsonl``, Italian) and SuperGLUE COPA (``COPA/val.jsonl``, English). The clean
training data is English prose: the paragraphs of the documentation files of the installed Python packages
(README/METADATA/.md/.rst, one row per paragraph), the kind of text in which a short English premise could turn up
by chance. Each case is a built mixture (the built layout: ``dataset/`` and the datasheet) of the clean rows plus:

- ``clean``: nothing (every flagged example is a false positive);
- ``rendered``: every example rendered with each of 8 xP3-style COPA prompts (English prompt words around the
  premise and the choices, as xP3 applies English prompts to every language; input and target);
- ``premise_only``: each premise alone, inside a paragraph of the clean text;
- ``whole_example``: premise, choice 1 and choice 2 one after the other, inside a paragraph.

For each case and set it prints the examples flagged by the 13-gram rule, by the key rule and by either, via the
same ``contamination_report`` the command runs. Offline; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUBJECTS = {"en": ["The man", "The woman", "My friend", "The girl", "The boy", "The teacher", "My neighbour",
                   "The child", "The driver", "The student"],
            "it": ["L'uomo", "La donna", "Il mio amico", "La ragazza", "Il ragazzo", "L'insegnante", "Il mio vicino",
                   "Il bambino", "L'autista", "Lo studente"]}
ACTIONS = {"en": ["dropped the plate", "missed the bus", "opened the window", "burned the toast", "forgot the umbrella",
                  "spilled the coffee", "locked the door", "turned off the light", "painted the fence",
                  "planted a tree", "sold the car", "fixed the bike", "cleaned the kitchen", "read the letter",
                  "closed the shop", "called the doctor", "washed the dishes", "moved the table", "lit the candle",
                  "ate the cake"],
           "it": ["ha fatto cadere il piatto", "ha perso l'autobus", "ha aperto la finestra", "ha bruciato il pane",
                  "ha dimenticato l'ombrello", "ha rovesciato il caffè", "ha chiuso la porta a chiave",
                  "ha spento la luce", "ha dipinto il recinto", "ha piantato un albero", "ha venduto la macchina",
                  "ha riparato la bicicletta", "ha pulito la cucina", "ha letto la lettera", "ha chiuso il negozio",
                  "ha chiamato il medico", "ha lavato i piatti", "ha spostato il tavolo", "ha acceso la candela",
                  "ha mangiato la torta"]}
TAILS = {"en": ["", "", "", " last night", " during the long birthday party of her older sister in the garden"],
         "it": ["", "", "", " ieri sera", " durante la lunga festa di compleanno della sorella maggiore in giardino"]}
CAUSES = {"en": ["It was very tired.", "It was in a hurry.", "It was raining hard.", "The room was too hot.",
                 "The shop was about to close.", "Someone had asked for help.", "The floor was wet.",
                 "It felt unwell.", "Guests were arriving soon.", "The power had gone out."],
          "it": ["Era molto stanco.", "Aveva fretta.", "Pioveva forte.", "La stanza era troppo calda.",
                 "Il negozio stava per chiudere.", "Qualcuno aveva chiesto aiuto.", "Il pavimento era bagnato.",
                 "Non si sentiva bene.", "Gli ospiti stavano arrivando.", "Era saltata la corrente."]}
EFFECTS = {"en": ["Everyone laughed.", "The house went quiet.", "A neighbour came to look.", "It had to start again.",
                  "The day was saved.", "Nobody noticed.", "The cat ran away.", "The family was pleased.",
                  "It was late for work.", "The kitchen smelled of smoke."],
           "it": ["Tutti hanno riso.", "La casa è diventata silenziosa.", "Un vicino è venuto a vedere.",
                  "Ha dovuto ricominciare.", "La giornata era salva.", "Nessuno se ne è accorto.", "Il gatto è scappato.",
                  "La famiglia era contenta.", "È arrivato tardi al lavoro.", "La cucina sapeva di fumo."]}


def examples(lang: str) -> list[dict]:
    """100 COPA rows (premise, choice1, choice2, question, label) of our grammar."""
    out = []
    for i in range(100):
        premise = f"{SUBJECTS[lang][i % 10]} {ACTIONS[lang][2 * (i // 10) + i % 2]}{TAILS[lang][(i // 3) % 5]}."
        cause = i % 2 == 0
        pool = CAUSES if cause else EFFECTS
        out.append({"premise": premise, "choice1": pool[lang][i % 10], "choice2": pool[lang][(i + 3) % 10],
                    "question": "cause" if cause else "effect", "label": i % 2, "idx": i})
    assert len({e["premise"] for e in out}) == 100
    return out


def render(row: dict) -> list[tuple[str, str]]:
    """The row under 8 prompts shaped as xP3's COPA prompts: (inputs, targets)."""
    p, c1, c2, cause = row["premise"], row["choice1"], row["choice2"], row["question"] == "cause"
    p_open, right = p.rstrip("."), (c1, c2)[row["label"]]
    word = "because" if cause else "so"
    return [
        (f"{p} {'This happened because...' if cause else 'As a consequence...'}\nHelp me pick the more plausible "
         f"option:\n- {c1}\n- {c2}", right),
        (f"Pick the more likely continuation to the following sentence:\n{p_open} "
         f"{'because of' if cause else 'as a result of'}:", right),
        (f"{p_open} {word}... Choose between:\n- {c1}\n- {c2}", right),
        (f"Exercise: choose the most plausible alternative.\n\n{p} {word}...\n- {c1}\n- {c2}", right),
        (f"{p}\n\nI am hesitating between two options. Help me choose the more likely {row['question']}:\n"
         f"- {c1}\n- {c2}", right),
        (f"\"{c1}\" or \"{c2}\"? {p_open} {word}", right),
        (f"{p} {'Which may be caused by' if cause else 'What could happen next,'} \"{c1}\" or \"{c2}\"?", right),
        (f"Premise: {p}\nWhat is the {row['question']}?\n- {c1}\n- {c2}", right),
    ]


def clean_paragraphs(limit: int) -> list[str]:
    """English prose: paragraphs of the installed packages' documentation files."""
    import site

    out = []
    for root in site.getsitepackages():
        for path in sorted(Path(root).rglob("*")):
            if path.name not in ("METADATA", "README", "README.md") and path.suffix not in (".md", ".rst"):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            out += [p.strip() for p in text.split("\n\n") if len(p.split()) >= 8]
            if len(out) >= limit:
                return out[:limit]
    return out


def write_release(folder: Path, rows: dict[str, list[dict]]) -> dict[str, str]:
    for lang, task_rows in rows.items():
        path = folder / ("xcopa-master/data/it/val.it.jsonl" if lang == "it" else "super_glue/COPA/val.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in task_rows), encoding="utf-8")
    return {"xcopa": str(folder / "xcopa-master"), "copa": str(folder / "super_glue")}


def write_build(folder: Path, texts: list[tuple[str, str]]) -> Path:
    from datasets import Dataset, DatasetDict

    n = len(texts)
    train = Dataset.from_dict({"inputs": [t[0] for t in texts], "targets": [t[1] for t in texts],
                               "language": ["en"] * n, "task": ["t"] * n, "source": ["s"] * n,
                               "template": ["t"] * n, "choices": [[] for _ in range(n)]})
    DatasetDict({"train": train, "validation": train.select(range(1))}).save_to_disk(str(folder / "dataset"))
    (folder / "datasheet.json").write_text(json.dumps({"name": folder.name, "fingerprint": folder.name}))
    (folder / "datasheet.md").write_text(f"# Mixture datasheet: {folder.name}\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean-rows", type=int, default=40_000)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    from bloomz_tune.mixture.contamination import contamination_report

    rows = {lang: examples(lang) for lang in ("it", "en")}
    clean = clean_paragraphs(args.clean_rows)
    plants = {"clean": lambda r, i: [],
              "rendered": lambda r, i: render(r),
              "premise_only": lambda r, i: [(f"{clean[i][:200]} {r['premise']} {clean[-i - 1][:200]}", "")],
              "whole_example": lambda r, i: [(f"{clean[i][:200]} {r['premise']} {r['choice1']} {r['choice2']}", "")]}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = write_release(Path(tmp) / "eval", rows)
        for case, plant in plants.items():
            texts = [(c, "") for c in clean] + [x for lang in rows for i, r in enumerate(rows[lang])
                                                for x in plant(r, i)]
            built = write_build(Path(tmp) / case, texts)
            report = contamination_report(built, ["xcopa", "copa"], ["it", "en"], dirs, progress=False)
            for key, d in report["datasets"].items():
                results[(case, key)] = {"rows": len(texts), "examples": d["examples"], **d["by_rule"],
                                        "either": d["contaminated"]}
    print(f"clean rows: {len(clean):,} paragraphs of package documentation (English)")
    print("| case | dataset | training rows | examples | 13-gram rule | key rule | either |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (case, key), r in results.items():
        print(f"| {case} | {key} | {r['rows']:,} | {r['examples']} | {r['ngram']} | {r['key']} | {r['either']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{c}/{k}": r for (c, k), r in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

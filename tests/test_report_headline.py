"""What a reader sees first (the headline: key figure, trust line, settings)
and the ensemble's per-member table (robustaudio.report.headline)."""

import re

import pandas as pd

from robustaudio.report.headline import ensemble_table, evaluation_text, trust


def test_attack_headline_gives_the_key_figure_the_trust_line_and_the_settings(attack_run):
    markdown = (attack_run / "report.md").read_text()
    lines = markdown.splitlines()
    assert lines[0] == "# Robustness report: cnn"
    sentence = lines[2]
    assert re.match(r"\*\*Accuracy [01]\.\d\d clean → robust accuracy [01]\.\d\d \[.*\] at L∞ ε = 0\.0005 "
                    r"\(perturbations at a median \d+ dB SNR\) → [01]\.\d\d \[.*\] at ε = 0\.002 \(\d+ dB SNR\), under "
                    r"PGD, 3 steps × 1 "
                    r"restart, on 10 clips\.\*\*$", sentence), sentence
    trust_line = lines[4]
    assert trust_line.startswith("> **⚠") or re.match(r"✓ All \d+ sanity checks passed\.", trust_line)
    settings = next(line for line in lines if line.startswith("Settings: "))
    assert "attack: PGD, 3 steps × 1 restart" in settings and "seed: 0" in settings
    assert "10 of 105 test clips of minievents, a sample stratified over labels (fixed seed 0" in settings
    html = (attack_run / "report.html").read_text()
    assert html.index("class='headline'") < html.index("<h2>")  # first thing under the title
    assert ("class='flags'" in html) != ("class='passed'" in html)
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert len(headings) == len(set(headings)), headings  # no "Accuracy per class" twice


def test_flags_are_grouped_by_check_with_their_fix():
    checks = [{"name": "not converged", "flagged": True, "seen": "0.5 → 0.2", "reason": "r", "fix": "more steps",
               "threat": "linf-waveform-eps=0.001"},
              {"name": "not converged", "flagged": True, "seen": "0.3 → 0.1", "reason": "r", "fix": "more steps",
               "threat": "linf-waveform-eps=0.002"},
              {"name": "gradients masked", "flagged": False, "seen": "0 of 8", "reason": "r", "fix": "f"}]
    flags, passed = trust(checks)
    assert passed == "" and len(flags) == 1
    assert flags[0].where == "linf-waveform-eps=0.001, linf-waveform-eps=0.002" and flags[0].fix == "more steps"
    assert trust([checks[2]]) == ([], "All 1 sanity checks passed.")


def test_evaluation_is_named_with_its_members_and_budgets():
    reliable = {"attack": "reliable", "backend": "native", "steps": 25, "restarts": 1, "queries": 300, "targets": 3,
                "labels": list("abcd"), "threats": [{"norm": "linf"}]}
    assert evaluation_text(reliable, short=True) == "reliable (APGD-CE → APGD-T → Square, 25 steps)"
    assert "Square 300 queries" in evaluation_text(reliable)
    two = {**reliable, "labels": ["a", "b"], "threats": [{"norm": "l1"}]}
    assert evaluation_text(two, short=True) == "reliable (APGD-CE, 25 steps)"  # APGD-T needs 3 classes, Square L∞/L2
    assert evaluation_text({"attack": "pgd", "steps": 10, "restarts": 2}) == "PGD, 10 steps × 2 restarts"
    assert evaluation_text({"attack": "fmn", "backend": "foolbox",
                            "steps": None}) == "foolbox fmn, its authors' default settings"


def test_ensemble_table_counts_robust_accuracy_after_each_member():
    records = pd.DataFrame({"condition": ["c"] * 5, "clean_correct": [True, True, True, True, False],
                            "broken_by": ["apgd-ce", "apgd-t", "square", None, None]})
    card = {"settings": {"labels": list("abc"), "multilabel": False},
            "conditions": [{"condition": "c", "attack": "reliable", "norm": "linf"}]}
    title, header, rows, _ = ensemble_table(card, records)
    assert header == ["condition", "clean", "after APGD-CE", "after APGD-T", "after Square"]
    assert rows == [["c", "0.80", "0.60", "0.40", "0.20"]]
    card["conditions"][0]["attack"] = "pgd"
    assert ensemble_table(card, records) is None


def test_study_reports_open_with_their_key_figure():
    from robustaudio.report.defenses import defenses_headline
    from robustaudio.report.jam import jam_headline

    def est(v):
        return {"value": v, "ci95": [v, v], "n": 4}

    rows = [{"defense": "none", "clean_accuracy": est(0.9), "robust_accuracy": est(0.1)},
            {"defense": "none", "clean_accuracy": est(0.9), "robust_accuracy": est(0.05)},
            {"defense": "adversarial", "clean_accuracy": est(0.8), "robust_accuracy": est(0.4), "clips": 4}]
    rows[0]["clips"] = 4
    curves = [{"name": "sigma-0.25", "radii": [0.0, 0.1], "certified_accuracy": [0.7, 0.5]}]
    headline = defenses_headline({"model": "cnn", "threat_name": "linf ε=0.002", "rows": rows}, curves)
    assert headline.sentence == ("Clean → robust accuracy under linf ε=0.002, each defense at its strongest attack: "
                                 "none 0.90 → 0.05, adversarial 0.80 → 0.40; certified accuracy at L2 radius 0.1: up "
                                 "to 0.50 (sigma-0.25).")
    card = {"headline_f1": {"held-out": {"clean": 0.9, "random": 0.85, "adversarial": 0.3}}, "target": "speech",
            "music_db": -10.0, "settings": {"steps": 2, "batch_size": 2, "optimisation_rooms": 1, "held_out_rooms": 1,
                                            "draws": 1, "seed": 0}}
    assert jam_headline(card).sentence == ("The detector's F1 for 'speech' in held-out rooms: 0.9 (clean) → 0.85 "
                                           "(random music) → 0.3 (adversarial), with music at -10 dB relative to the "
                                           "speech.")


def test_jam_headline_flags_an_engine_that_random_music_alone_masks():
    """The pooled control can keep 0.70 while one evaluated engine's voices are drowned by any music (the
    Festival and SAM folds of experiments/jam_loeo.md and jam_sam.md): the headline says which engine."""
    from robustaudio.report.jam import jam_headline

    def row(condition, f1, group=None):
        entry = {"detector": "target", "condition": condition, "voices": 6, "f1": {"value": f1, "ci95": [f1 - 0.05,
                                                                                                       f1 + 0.05]}}
        return {**entry, "group": group} if group else entry

    card = {"target": "alexa", "music_db": -10.0,
            "seed_summary": [row("clean", 0.98), row("random", 0.72), row("adversarial", 0.05)],
            "engine_summary": [row("random", 0.81, "flite"), row("random", 0.61, "festival"),
                               row("adversarial", 0.04, "flite"), row("adversarial", 0.06, "festival")],
            "settings": {"steps": 2, "batch_size": 2, "optimisation_rooms": 1, "held_out_rooms": 1, "draws": 1,
                         "seed": 0, "scene_seeds": [1, 2], "evaluate_engines": ["flite", "festival"]}}
    flags = jam_headline(card).flags
    assert [f.name for f in flags] == ["loud control for an engine"]
    assert "festival F1 0.61" in flags[0].seen and "flite" not in flags[0].seen
    card["engine_summary"][1] = row("random", 0.75, "festival")
    assert jam_headline(card).flags == []


def test_jam_headline_flags_a_jam_that_has_not_jammed_its_own_learning_scenes():
    """Learned at -31 dB, the music still fired on 25-50% of its learning batches after 2000 steps and took the test
    voices from 0.85 to 0.63 only (experiments/jam_pico.md): the headline says the optimisation did not finish,
    so the score is not read as robustness; a jam that ends near 0 (as at -7 and -13 dB) is not flagged."""
    from robustaudio.report.jam import jam_headline, learning_firing

    def estimate(f1):
        return {"value": f1, "ci95": [f1 - 0.02, f1 + 0.02]}

    def history(end):  # logged every 10 steps; firing falls from 0.9 to ``end`` at step 1000, then stays
        return [{"step": k, "loss": 1.0, "firing": max(end, 0.9 - k * 0.9 / 1000)} for k in range(10, 2001, 10)]

    card = {"target": "hey_jarvis", "music_db": -31.0,
            "seed_summary": [{"detector": "target", "condition": c, "voices": 3, "f1": estimate(v)}
                             for c, v in (("clean", 0.88), ("random", 0.85), ("adversarial", 0.63))],
            "settings": {"steps": 2000, "batch_size": 16, "optimisation_rooms": 16, "held_out_rooms": 16,
                         "draws": 3, "seed": 0, "scene_seeds": [1, 2]}, "history": history(0.38)}
    value, steps = learning_firing(card["history"])
    assert abs(value - 0.38) < 1e-9 and steps == 200
    flags = jam_headline(card).flags
    assert [f.name for f in flags] == ["unfinished optimisation"]
    assert "38% of the scenes the music learned on over its last 200 steps" in flags[0].seen
    assert "more --steps" in flags[0].fix
    card["history"] = history(0.03)
    assert jam_headline(card).flags == []
    card["history"] = [{"step": 1, "visibility": 0.9}]  # a masking jam reads no detector
    assert learning_firing(card["history"]) is None and jam_headline(card).flags == []
    card["history"] = [{"step": k, "firing": 0.5} for k in (1, 2, 3)]  # fewer than five logged: all of them
    assert learning_firing(card["history"]) == (0.5, 3)


def test_jam_headline_says_whether_the_level_was_fitted_to_the_evaluated_engine():
    """On held-out engines the headline says where the music level came from: given, chosen on other engines only
    (which missed an unheard engine's level in both directions), or on other voices of the evaluated engine."""
    from robustaudio.report.jam import jam_headline

    def estimate(f1):
        return {"value": f1, "ci95": [f1 - 0.05, f1 + 0.05]}

    card = {"target": "alexa", "music_db": -13.0,
            "seed_summary": [{"detector": "target", "condition": c, "voices": 5, "f1": estimate(v)}
                             for c, v in (("clean", 0.98), ("random", 0.79), ("adversarial", 0.11))],
            "settings": {"steps": 2, "batch_size": 2, "optimisation_rooms": 1, "held_out_rooms": 1, "draws": 1,
                         "seed": 0, "scene_seeds": [1, 2], "evaluate_engines": ["dectalk"], "level_choice": None}}

    def fit_line(choice):
        card["settings"]["level_choice"] = choice
        return [line for line in jam_headline(card).settings if line.startswith("music level")]

    given = fit_line(None)
    assert len(given) == 1 and "given, not chosen" in given[0]
    assert "other engines only" in fit_line({"engines": ["espeak-ng", "flite"], "evaluated_engines": []})[0]
    assert fit_line({"engines": ["dectalk"], "evaluated_engines": ["dectalk"]}) == [
        "music level chosen on other voices of the evaluated engine(s) dectalk (random music only)"]
    card["settings"]["evaluate_engines"] = []  # not a held-out-engine run: nothing to say
    assert fit_line(None) == []


def test_a_loud_control_at_a_chosen_level_says_the_level_did_not_hold_for_these_voices():
    """Chosen on two RHVoice speakers (random music 0.76 at -6 dB), the level left three others at 0.35
    (experiments/jam_rhvoice.md): the fix names the choice and --level-by voice, not only a quieter level."""
    from robustaudio.report.jam import jam_headline

    def row(condition, f1):
        return {"detector": "target", "condition": condition, "voices": 3, "f1": {"value": f1, "ci95": [f1 - 0.1,
                                                                                                   f1 + 0.1]}}

    choice = {"chosen_db": -6.0, "floor": 0.75, "positives": 18, "negatives": 20, "scene_seeds": [1001, 1002],
              "draws": 2, "split": "level", "random_f1": {"-8": {"per_seed": {}, "mean": 0.84},
                                                          "-6": {"per_seed": {}, "mean": 0.759}}}
    card = {"target": "alexa", "music_db": -6.0,
            "seed_summary": [row("clean", 0.96), row("random", 0.354), row("adversarial", 0.01)],
            "settings": {"steps": 2, "batch_size": 2, "optimisation_rooms": 1, "held_out_rooms": 1, "draws": 1,
                         "seed": 0, "scene_seeds": [1, 2], "level_choice": choice}}
    (flag,) = jam_headline(card).flags
    assert flag.name == "loud control" and "F1 0.35" in flag.seen
    assert "chosen on 18 other positives" in flag.fix and "0.759 at -6 dB" in flag.fix
    assert "--level-by voice" in flag.fix and "quieter --music-db" in flag.fix
    choice["by"] = "voice"
    assert "every level voice kept the floor" in jam_headline(card).flags[0].fix
    del card["settings"]["level_choice"]
    assert jam_headline(card).flags[0].fix.startswith("a quieter --music-db")


def test_the_two_snrs_on_the_first_screen_say_which_clips_they_are_over(attack_run):
    """The headline's SNR (every attacked clip) and the table's (fooled clips only) differ; each is named for what it
    is and equals that median of the records (they were both called "median SNR")."""
    from robustaudio.report import read_records

    records = read_records(attack_run)
    block = records[(records["condition"] == records["condition"].iloc[-1]) & (records["attacked"] == True)]  # noqa: E712
    attacked = float(block["snr_db"].median())
    fooled = float(block[block["success"] == True]["snr_db"].median())  # noqa: E712
    markdown = (attack_run / "report.md").read_text()
    assert f"at ε = 0.002 ({attacked:.0f} dB SNR)" in markdown.splitlines()[2]
    header = next(line for line in markdown.splitlines() if line.startswith("| condition | robust acc."))
    assert "median SNR dB (fooled)" in header
    row = next(line for line in markdown.splitlines() if line.startswith("| ") and "0.002" in line.split("|")[1])
    assert f"{fooled:.3g}"[:3] in row or f"{fooled:.1f}" in row


def test_the_per_class_table_says_how_many_clips_each_class_has(attack_run):
    """Per-class accuracies on 1-12 clips a class read as precise numbers; the table now gives each class's count
    and says how much one clip moves it."""
    markdown = (attack_run / "report.md").read_text()
    lines = markdown.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| class (clips) |")))
    rows = [line for line in lines[header + 2:] if line.startswith("| ")]
    assert len(rows) == 10 and all(re.match(r"\| [\w ,;-]+ \(1\) \|", row) for row in rows), rows
    assert "as few as 1): one clip moves a class's accuracy by 1" in markdown

"""Natural-noise reports speak of noise (accuracy under noise, severity), not of attacks, and carry only the checks
that apply to noise (none of the attack checks)."""

import json
import re

from click.testing import CliRunner

from robustaudio.cli import main

ATTACK_WORDS = ("robust acc", "success rate", "attack wall time", "accuracy rises with ε", "black-box beats",
                "Attacks at fixed budgets", "Sanity checks", "perturbation")


def test_noise_report_uses_noise_language_and_no_attack_checks(tmp_path):
    out = tmp_path / "noise"
    result = CliRunner().invoke(main, ["noise", "--model", "cnn", "--corruption", "gaussian_snr", "--limit", "6",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "accuracy under noise" in result.output and "success rate" not in result.output
    assert re.search(r"gaussian_snr at SNR 40 dB: accuracy under noise [01]\.\d{3}", result.output)
    card = json.loads((out / "card.json").read_text())
    assert card["checks"] == [] and card["flags"] == []
    markdown, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text in (markdown, html):
        for word in ATTACK_WORDS:
            assert word.lower() not in text.lower(), word
        assert "accuracy under noise" in text and "severity" in text and "SNR 10 dB" in text
    assert markdown.startswith("# Natural-noise report: cnn\n\n**Accuracy ")
    assert "No sanity check applies to natural noise" in markdown
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert len(headings) == len(set(headings))
    assert "<audio" not in html  # nothing to listen to: the noise is not stored either

"""Command line: ``python -m zegclip info`` (parameter counts from the fact sheet §13)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zegclip.cli import main

ROOT = Path(__file__).resolve().parents[1]

# Fact sheet §13, computed here from its per-component formulas
D, W, T_VOC, T_COCO = 512, 768, 10, 100
PROMPTS = {T: 12 * T * W + (W * W + W) + 2 * W for T in (T_VOC, T_COCO)}  # prompt sets + prompt_proj + prompt_norm
LAYER = (3 * D * D + 3 * D + D * D + D) + 4 * (D * D + D) + (D * 2048 + 2048) + (2048 * D + D) + 3 * 2 * D
DECODER = 3 * LAYER
Q_PROJ = {"[t*g,t]": 2 * D * D + D, "t": D * D + D}
FROZEN_VISUAL = 86_828_544
FROZEN_TEXT = 63_428_096


def test_fact_sheet_arithmetic():
    assert PROMPTS[T_VOC] == 684_288 and PROMPTS[T_COCO] == 1_513_728
    assert LAYER == 4_204_032
    assert DECODER + Q_PROJ["[t*g,t]"] == 13_136_896
    assert PROMPTS[T_VOC] + DECODER + Q_PROJ["[t*g,t]"] == 13_821_184
    assert PROMPTS[T_COCO] + DECODER + Q_PROJ["[t*g,t]"] == 14_650_624


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zegclip", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_info_voc_subprocess():
    proc = run_cli("info", "--preset", "voc")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["preset"] == "voc"
    assert info["trainable_params"] == 13_821_184
    assert info["total_params"] == 164_077_824
    assert info["trainable_backbone"] == PROMPTS[T_VOC]
    assert info["trainable_decoder"] == DECODER + Q_PROJ["[t*g,t]"]
    assert info["frozen_clip_visual"] == FROZEN_VISUAL and info["frozen_clip_text"] == FROZEN_TEXT
    assert info["total_params"] == info["trainable_params"] + FROZEN_VISUAL + FROZEN_TEXT
    assert info["num_classes"] == 20 and info["seen"] == list(range(15)) and info["unseen"] == list(range(15, 20))
    assert info["config"]["encoder"]["num_prompts"] == 10


def test_unknown_preset_subprocess():
    proc = run_cli("info", "--preset", "nope")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown preset" in lines[0], proc.stderr
    assert proc.stdout == ""


def info_json(capsys, *args: str) -> dict:
    assert main(["info", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_coco(capsys):
    info = info_json(capsys, "--preset", "coco")
    assert info["trainable_params"] == 14_650_624
    assert info["total_params"] == 164_907_264
    assert info["trainable_backbone"] == PROMPTS[T_COCO]
    assert info["num_classes"] == 171 and len(info["seen"]) == 156 and len(info["unseen"]) == 15


def test_info_fix_nel(capsys):
    # Baseline-Fix + NEL: CLIP frozen, no prompts, no RD (query = t): only the decoder and a d->D q_proj train
    info = info_json(capsys, "--preset", "voc", "--variant", "Fix+NEL")
    assert info["trainable_backbone"] == 0
    assert info["trainable_params"] == info["trainable_decoder"] == DECODER + Q_PROJ["t"] == 12_874_752
    assert info["total_params"] == DECODER + Q_PROJ["t"] + FROZEN_VISUAL + FROZEN_TEXT
    assert info["config"]["encoder"]["mode"] == "fix" and info["config"]["query_format"] == "t"
    assert info["config"]["loss"]["kind"] == "plus"


def test_info_query_format_and_setting(capsys):
    info = info_json(capsys, "--preset", "voc", "--variant", "Fix+NEL+RD", "--setting", "transductive")
    assert info["trainable_params"] == DECODER + Q_PROJ["[t*g,t]"] == 13_136_896
    assert info["config"]["setting"] == "transductive"


@pytest.mark.parametrize(
    "args,needle",
    [(["--preset", "nope"], "unknown preset"), (["--variant", "DPT+XYZ"], "unknown variant"),
     (["--query-format", "t/g"], "unknown query format")],
)
def test_info_errors_in_process(capsys, args, needle):
    assert main(["info", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("zegclip info: error:")


def test_bad_setting_choice_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["info", "--setting", "weird"])
    assert info.value.code == 2


def test_help_and_argument_errors_never_import_torch():
    """`--help` and argument errors of every command answer without importing torch, open_clip or numpy (issue 29:
    they took 6.7 s when the package imported torch first); heavy modules load inside the commands."""
    import subprocess
    import sys

    commands = ["info", "demo", "train", "evaluate", "predict", "prepare", "mini", "reproduce", "bench"]
    script = (
        "import sys\n"
        "from zegclip.cli import main\n"
        "codes = []\n"
        f"for argv in [['--help']] + [[c, '--help'] for c in {commands!r}] + [['reproduce', '--jobs', 'two']]:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        codes.append(exc.code)\n"
        "heavy = sorted(m for m in ('torch', 'open_clip', 'numpy', 'pandas') if m in sys.modules)\n"
        "print('RESULT', codes, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120).stdout
    line = [x for x in out.splitlines() if x.startswith("RESULT")][0]
    assert line == "RESULT " + str([0] * (1 + len(commands)) + [2]) + " []"

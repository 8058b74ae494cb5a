"""Package boundaries the layout promises (README "Layout")."""

import subprocess
import sys


def test_lavit_imports_no_lightning():
    code = (
        "import sys, lavit, lavit.cli, lavit.detokenizer, lavit.video, lavit.video.synthetic, lavit.video.demo_data, lavit.video.frames, "
        "lavit.tokenizers, lavit.pipelines.extract, lavit.pipelines.tokenize\n"
        "import lightning_modules.cli  # the lavit console script: its pipeline commands start without Lightning\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'lightning_fabric'))\n"
        "assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
